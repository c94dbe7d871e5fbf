/* fuzz_decoder.h: the body shared by the libFuzzer targets, one per decoder.
 *
 * Each input goes to the decoder. A refused input must leave a struct that
 * _clear accepts; an accepted input must re-encode, decode
 * again and give an equal struct. Any other outcome aborts, which libFuzzer
 * reports as a finding.
 */
#ifndef TESTS_FUZZ_FUZZ_DECODER_H
#define TESTS_FUZZ_FUZZ_DECODER_H

#include <stdio.h>
#include <stdlib.h>

#include "proto/proto.h"
#include "tests/fuzz/proto_equal.h"

static char fuzz_err[PROTO_ERR_MAX];   /* what the last refusing call said */

static inline void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, fuzz_err);
    abort();
}

/* NAME: sample, viewbatch, ...; T: its struct; CLEAR: its _clear (or a no-op). */
#define FUZZ_DECODER(NAME, T, CLEAR)                                                           \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                              \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                               \
    {                                                                                          \
        static proto_buf_t buf;  /* reused, like a real sender does */                         \
        proto_msg_type_t type;                                                                 \
        T a, b;                                                                                \
        (void)proto_peek_type(data, size, &type, NULL, 0);                                     \
        if (proto_##NAME##_decode(&a, data, size, NULL, 0) != 0) {                             \
            CLEAR(&a);                                                                         \
            return 0;                                                                          \
        }                                                                                      \
        if (proto_peek_type(data, size, &type, fuzz_err, sizeof fuzz_err) != 0 ||              \
            type == PROTO_MSG_INVALID)                                                         \
            fuzz_fail("decoded, but proto_peek_type refuses it");                              \
        if (proto_##NAME##_encode(&buf, &a, fuzz_err, sizeof fuzz_err) != 0)                   \
            fuzz_fail("decoded, but cannot be re-encoded");                                    \
        if (proto_##NAME##_decode(&b, buf.data, buf.len, fuzz_err, sizeof fuzz_err) != 0)      \
            fuzz_fail("re-encoded message does not decode");                                   \
        if (!proto_##NAME##_equal(&a, &b))                                                     \
            fuzz_fail("round trip changed a field");                                           \
        CLEAR(&a);                                                                             \
        CLEAR(&b);                                                                             \
        return 0;                                                                              \
    }

/* For the types whose decode allocates nothing. */
#define FUZZ_NO_CLEAR(p) ((void)(p))

#endif
