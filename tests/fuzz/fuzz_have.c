/* fuzz_have: libFuzzer target for proto_have_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(have, proto_have_t, FUZZ_NO_CLEAR)
