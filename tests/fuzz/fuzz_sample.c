/* fuzz_sample: libFuzzer target for proto_sample_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(sample, proto_sample_t, FUZZ_NO_CLEAR)
