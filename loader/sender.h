/* loader/sender: encodes and sends the loader's Samples and Control
 * messages on its PUSH socket (through one reused encoding buffer). */
#ifndef LOADER_SENDER_H
#define LOADER_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "dataset/dataset.h"
#include "proto/proto.h"

typedef struct {
    void *push;
    proto_buf_t buf;
    const char *identity;
} sender_t;

/* Sends item of epoch (its label from ds) with its decoded pixels (h x w x c).
 * 0, or -1 when it cannot be encoded or sent (stopping). */
int send_sample(sender_t *s, const dataset_t *ds, size_t item, uint32_t epoch, const uint8_t *pixels,
                uint32_t h, uint32_t w, uint32_t c);

/* Sends a Control message (END_OF_EPOCH, END_OF_STREAM) from s->identity. */
int send_control(sender_t *s, proto_control_kind_t kind, uint32_t epoch, uint64_t count);

#endif
