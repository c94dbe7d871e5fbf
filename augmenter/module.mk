# augmenter: the augmentation stage (build/bin/augmenter, on libaugment.a from
# augment/) and the ViewBatch sink its benchmarks drive.
augmenter_SRCS := augmenter/main.c
augmenter_LIBS := augment transport proto console cli
$(eval $(call add_prog,augmenter))

view_sink_SRCS := bench/view_sink.c
view_sink_LIBS := transport proto console cli
$(eval $(call add_tool,view_sink))
