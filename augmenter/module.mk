# augmenter: the augmentation library (libaugment.a: operations, recipes,
# batching, preview grid), the augmenter executable, its unit test and its
# benchmark program.
augment_SRCS := augmenter/augment.c augmenter/ops.c augmenter/recipe.c augmenter/error.c \
                augmenter/preview.c augmenter/vipsstep.c
$(eval $(call add_lib,augment))

# The pixel loops need the vectoriser, which GCC runs fully only at -O3.
$(augment_OBJS): CFLAGS += -O3

augmenter_SRCS := augmenter/main.c
augmenter_LIBS := augment transport proto console cli
$(eval $(call add_prog,augmenter))

test_augment_LIBS := augment
$(eval $(call add_test,test_augment))

augment_bench_SRCS := bench/augment_bench.c
augment_bench_LIBS := augment cli
$(eval $(call add_tool,augment_bench))

view_sink_SRCS := bench/view_sink.c
view_sink_LIBS := transport proto console cli
$(eval $(call add_tool,view_sink))
