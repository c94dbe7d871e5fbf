/* nn/tensor: the arena of named tensors. */
#include "nn/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NN_HUGE_BYTES ((size_t)2 << 20)

size_t nn_shape_numel(int ndim, const int *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    return n;
}

void nn_shape_str(char *buf, size_t len, int ndim, const int *shape)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%d", i ? ", " : "", shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, ")");
}

int nn_arena_add(nn_arena *a, const char *name, int ndim, const int *shape, int flags)
{
    if (ndim < 0 || ndim > NN_MAX_DIMS || a->base)
        return -1;
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 32;
        nn_tensor *t = realloc(a->t, (size_t)cap * sizeof *t);
        if (!t)
            return -1;
        a->t = t;
        a->cap = cap;
    }
    nn_tensor *t = &a->t[a->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = nn_shape_numel(ndim, shape);
    t->offset = a->size;
    t->flags = flags;
    a->size += (t->numel + NN_ALIGN_FLOATS - 1) / NN_ALIGN_FLOATS * NN_ALIGN_FLOATS;
    return a->n++;
}

int nn_arena_alloc(nn_arena *a)
{
    size_t bytes = (a->size ? a->size : NN_ALIGN_FLOATS) * sizeof(float);
    void *p = NULL;
    /* large arenas on 2 MiB boundaries, backed by huge pages where the
     * kernel allows: activations are streamed through every step, and 4 KiB
     * pages make that TLB-bound */
    size_t align = bytes >= NN_HUGE_BYTES ? NN_HUGE_BYTES : 64;
    if (posix_memalign(&p, align, bytes))
        return -1;
#ifdef MADV_HUGEPAGE
    if (align == NN_HUGE_BYTES)
        madvise(p, bytes / NN_HUGE_BYTES * NN_HUGE_BYTES, MADV_HUGEPAGE);
#endif
    memset(p, 0, bytes);
    a->base = p;
    for (int i = 0; i < a->n; i++)
        a->t[i].data = a->base + a->t[i].offset;
    return 0;
}

int nn_arena_clone_layout(nn_arena *dst, const nn_arena *src)
{
    for (int i = 0; i < src->n; i++)
        if (nn_arena_add(dst, src->t[i].name, src->t[i].ndim, src->t[i].shape, src->t[i].flags) < 0)
            return -1;
    return nn_arena_alloc(dst);
}

void nn_arena_zero(nn_arena *a)
{
    if (a->base)
        memset(a->base, 0, a->size * sizeof(float));
}

void nn_arena_free(nn_arena *a)
{
    free(a->base);
    free(a->t);
    memset(a, 0, sizeof *a);
}

nn_tensor *nn_arena_find(const nn_arena *a, const char *name)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->t[i].name, name) == 0)
            return &a->t[i];
    return NULL;
}
