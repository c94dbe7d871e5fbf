# tests: programs the test scripts drive (build/tools). make_images writes the
# labeled image folders the integration tests train and load from, so that no
# test needs a dataset from outside the repository.
make_images_SRCS := tests/make_images.c
make_images_LIBS := cli
$(eval $(call add_tool,make_images))
