# nn: the neural-network core (libnn.a): layers, losses, networks, optimizers,
# checkpoints, the OpenBLAS kernel check; its unit tests; the nntool command;
# the training-step benchmark. A program that calls nn/blas.h links console too.
nn_SRCS := nn/tensor.c nn/parallel.c nn/layers.c nn/loss.c nn/net.c nn/safetensors.c \
           nn/optim.c nn/ckpt.c nn/winograd.c nn/blas.c
$(eval $(call add_lib,nn))

test_nn_LIBS := nn
$(eval $(call add_test,test_nn))

test_nn_reference_LIBS := nn
$(eval $(call add_test,test_nn_reference))

test_nn_net_LIBS := nn
$(eval $(call add_test,test_nn_net))

test_nn_optim_LIBS := nn
$(eval $(call add_test,test_nn_optim))

test_nn_ckpt_LIBS := nn
$(eval $(call add_test,test_nn_ckpt))

nntool_SRCS := nn/tool.c
nntool_LIBS := nn console cli
$(eval $(call add_prog,nntool))

# benchmark: build/tools/nn_bench, run by bench/nn_bench.sh
nn_bench_SRCS := bench/nn_bench.c
nn_bench_LIBS := nn console cli
$(eval $(call add_tool,nn_bench))

# the Winograd transforms and the element-wise loops are written to vectorize:
# let the compiler do it
$(BUILD)/obj/nn/winograd.o $(BUILD)/obj/nn/layers.o: CFLAGS += -O3
