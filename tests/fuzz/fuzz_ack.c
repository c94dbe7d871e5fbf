/* fuzz_ack: libFuzzer target for proto_ack_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(ack, proto_ack_t, proto_ack_clear)
