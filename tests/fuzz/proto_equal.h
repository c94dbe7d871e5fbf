/* proto_equal.h: field-by-field equality of decoded messages, shared by
 * tests/test_proto.c and the fuzzers (a decode, re-encode, decode round trip
 * must give equal structs). Doubles compare by bit pattern so NaN equals
 * itself. Each returns 1 when equal. */
#ifndef TESTS_FUZZ_PROTO_EQUAL_H
#define TESTS_FUZZ_PROTO_EQUAL_H

#include <string.h>

#include "proto/proto.h"

static inline int proto_sample_equal(const proto_sample_t *a, const proto_sample_t *b)
{
    return a->index == b->index && a->epoch == b->epoch && a->label == b->label &&
           a->height == b->height && a->width == b->width && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, proto_sample_bytes(a)) == 0;
}

static inline int proto_viewbatch_equal(const proto_viewbatch_t *a, const proto_viewbatch_t *b)
{
    if (a->dtype != b->dtype || a->views != b->views || a->channels != b->channels ||
        a->height != b->height || a->width != b->width || a->n_samples != b->n_samples ||
        a->target_classes != b->target_classes)
        return 0;
    size_t n = proto_viewbatch_sample_bytes(a);
    for (uint32_t i = 0; i < a->n_samples; i++) {
        const proto_view_sample_t *x = &a->samples[i], *y = &b->samples[i];
        if (x->index != y->index || x->epoch != y->epoch || x->label != y->label ||
            memcmp(x->target, y->target, a->views * sizeof x->target[0]) != 0 ||
            memcmp(x->data, y->data, n) != 0)
            return 0;
    }
    return 1;
}

static inline int proto_checkpoint_equal(const proto_checkpoint_t *a, const proto_checkpoint_t *b)
{
    if (a->step != b->step || a->epoch != b->epoch || strcmp(a->method, b->method) != 0 ||
        strcmp(a->arch, b->arch) != 0 || strcmp(a->path, b->path) != 0 ||
        a->n_bytes != b->n_bytes || (a->bytes == NULL) != (b->bytes == NULL))
        return 0;
    return a->bytes == NULL || memcmp(a->bytes, b->bytes, a->n_bytes) == 0;
}

static inline int proto_control_equal(const proto_control_t *a, const proto_control_t *b)
{
    return a->kind == b->kind && strcmp(a->sender, b->sender) == 0 && a->epoch == b->epoch &&
           a->count == b->count;
}

static inline int proto_stats_equal(const proto_stats_t *a, const proto_stats_t *b)
{
    if (strcmp(a->sender, b->sender) != 0 || memcmp(&a->time, &b->time, sizeof a->time) != 0 ||
        a->n_stats != b->n_stats)
        return 0;
    for (uint32_t i = 0; i < a->n_stats; i++)
        if (strcmp(a->stats[i].name, b->stats[i].name) != 0 ||
            memcmp(&a->stats[i].value, &b->stats[i].value, sizeof(double)) != 0)
            return 0;
    return 1;
}

static inline int proto_ack_equal(const proto_ack_t *a, const proto_ack_t *b)
{
    return strcmp(a->sender, b->sender) == 0 && a->epoch == b->epoch &&
           a->n_indices == b->n_indices &&
           memcmp(a->indices, b->indices, a->n_indices * sizeof a->indices[0]) == 0;
}

static inline int proto_have_equal(const proto_have_t *a, const proto_have_t *b)
{
    if (strcmp(a->sender, b->sender) != 0 || a->epoch != b->epoch || a->step != b->step ||
        a->n_epochs != b->n_epochs)
        return 0;
    for (uint32_t k = 0; k < a->n_epochs; k++)
        if (a->done_bytes[k] != b->done_bytes[k] ||
            (a->done_bytes[k] && memcmp(a->done[k], b->done[k], a->done_bytes[k]) != 0))
            return 0;
    return 1;
}

#endif
