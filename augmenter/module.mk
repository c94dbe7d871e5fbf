# augmenter: the augmentation stage (build/bin/augmenter, on libaugment.a from
# augment/) and the ViewBatch sink its benchmarks drive. main.c reads the
# command line (options.c) and runs the stage (augmenter.c: the parent, with
# supervisor.c replacing dead workers; worker.c: one worker process).
augmenter_SRCS := augmenter/main.c augmenter/options.c augmenter/augmenter.c augmenter/supervisor.c \
                  augmenter/worker.c
augmenter_LIBS := augment transport proto console cli
$(eval $(call add_prog,augmenter))

view_sink_SRCS := bench/view_sink.c
view_sink_LIBS := transport proto console cli
$(eval $(call add_tool,view_sink))
