/* fuzz_checkpoint: libFuzzer target for proto_checkpoint_decode (see fuzz_decoder.h). */
#include "tests/fuzz/fuzz_decoder.h"

FUZZ_DECODER(checkpoint, proto_checkpoint_t, FUZZ_NO_CLEAR)
