# dataset: opens image datasets (class folders, IDX, CIFAR batches) and decodes
# items into 8-bit HWC pixels (libdataset.a), with its unit test.
dataset_SRCS := dataset/dataset.c dataset/decode.c dataset/split.c
$(eval $(call add_lib,dataset))

test_dataset_LIBS := dataset
$(eval $(call add_test,test_dataset))
