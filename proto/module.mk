# proto: message encode/decode (libproto.a), its unit test and one fuzzer per decoder.
proto_SRCS := proto/proto.c proto/scan.c proto/sample.c proto/viewbatch.c \
              proto/checkpoint.c proto/control.c proto/stats.c proto/ack.c proto/have.c proto/topic.c
$(eval $(call add_lib,proto))

test_proto_LIBS := proto
$(eval $(call add_test,test_proto))

FUZZ_DECODERS := sample viewbatch checkpoint control stats ack have
$(foreach d,$(FUZZ_DECODERS),$(eval fuzz_$(d)_SRCS := $(proto_SRCS))$(eval $(call add_fuzzer,fuzz_$(d))))
