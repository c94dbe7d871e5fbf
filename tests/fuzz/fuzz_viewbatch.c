/* fuzz_viewbatch: libFuzzer target for proto_viewbatch_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(viewbatch, proto_viewbatch_t, proto_viewbatch_clear)
