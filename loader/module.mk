# loader: the dataset-reading stage (build/bin/loader), its test consumer and
# its benchmark consumer. libloadercore.a holds everything but main (options,
# cache, decoding pool, shuffle order, acknowledgement ledger, queue size, the
# control thread, the sender, --exactly-once, the stage itself) so that the
# unit test links the same code; build/bin/loader is main.c on top of it.
loadercore_SRCS := loader/options.c loader/cache.c loader/ledger.c loader/order.c loader/pool.c loader/queue.c \
                   loader/control.c loader/sender.c loader/exactly_once.c loader/loader.c
$(eval $(call add_lib,loadercore))

loader_SRCS := loader/main.c
loader_LIBS := loadercore dataset transport proto console cli
$(eval $(call add_prog,loader))

test_loader_LIBS := loadercore dataset transport proto console cli
$(eval $(call add_test,test_loader))

# Helper programs for the tests and the benchmark:
# tests/it_loader.sh drives loader_consumer, bench/loader_bench.sh loader_sink
# and loader_steps.
loader_consumer_SRCS := tests/loader_consumer.c
loader_consumer_LIBS := dataset transport proto console cli
$(eval $(call add_tool,loader_consumer))

loader_sink_SRCS := bench/loader_sink.c
loader_sink_LIBS := transport proto console cli
$(eval $(call add_tool,loader_sink))

loader_steps_SRCS := bench/loader_steps.c
loader_steps_LIBS := dataset proto console cli
$(eval $(call add_tool,loader_steps))
