/* fuzz_stats: libFuzzer target for proto_stats_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(stats, proto_stats_t, proto_stats_clear)
