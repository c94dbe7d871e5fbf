# augment: the augmentation library (libaugment.a: operations, recipes,
# batching, preview grid) that the augmenter and the evaluator link, its unit
# test and its benchmark program.
augment_SRCS := augment/augment.c augment/ops.c augment/recipe.c \
                augment/preview.c augment/vipsstep.c
$(eval $(call add_lib,augment))

# The pixel loops need the vectoriser, which GCC runs fully only at -O3.
$(augment_OBJS): CFLAGS += -O3

test_augment_LIBS := augment
$(eval $(call add_test,test_augment))

augment_bench_SRCS := bench/augment_bench.c
augment_bench_LIBS := augment cli
$(eval $(call add_tool,augment_bench))
