/* fuzz_control: libFuzzer target for proto_control_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(control, proto_control_t, FUZZ_NO_CLEAR)
