/* nn/tensor: named float32 tensors carved out of one allocation (an arena).
 *
 * The network keeps one arena per kind: parameters (with the batch-norm
 * running statistics), gradients (same table, same offsets as parameters),
 * activations, and optimizer state. An arena is filled in two phases:
 * nn_arena_add() declares named tensors, nn_arena_alloc() makes the single
 * allocation and points every tensor into it. Nothing is allocated after that,
 * so memory does not grow from step to step.
 */
#ifndef NN_TENSOR_H
#define NN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define NN_MAX_DIMS   4
#define NN_MAX_NAME   96
#define NN_ALIGN_FLOATS 16           /* every tensor starts on a 64-byte boundary */

/* Flags of a tensor in a parameter table. */
enum {
    NN_T_TRAIN  = 1 << 0,   /* trainable: has a gradient the optimizer uses */
    NN_T_DECAY  = 1 << 1,   /* a weight (conv, linear): weight decay and LARS adaptation apply */
    NN_T_BUFFER = 1 << 2,   /* a buffer (running mean/var): saved, never optimized */
};

typedef struct nn_tensor {
    char name[NN_MAX_NAME];  /* PyTorch state_dict name, e.g. "encoder.layers.0.weight" */
    int ndim;
    int shape[NN_MAX_DIMS];
    size_t numel;
    size_t offset;           /* in floats, from the start of the arena */
    int flags;               /* NN_T_* */
    float *data;             /* set by nn_arena_alloc */
} nn_tensor;

typedef struct nn_arena {
    nn_tensor *t;            /* table of tensors, in declaration order */
    int n, cap;
    size_t size;             /* floats, including alignment padding */
    float *base;             /* the one allocation (64-byte aligned, zeroed) */
} nn_arena;

/* Declares a tensor of `ndim` dimensions (shape given as an array); returns
 * its index, or -1 when out of memory. Only before nn_arena_alloc. */
int nn_arena_add(nn_arena *a, const char *name, int ndim, const int *shape, int flags);
/* Allocates the arena (zeroed) and points every tensor into it: 0 or -1. */
int nn_arena_alloc(nn_arena *a);
/* Declares the same tensors as `src` (names, shapes, flags) and allocates. */
int nn_arena_clone_layout(nn_arena *dst, const nn_arena *src);
void nn_arena_zero(nn_arena *a);
void nn_arena_free(nn_arena *a);
/* The tensor called `name`, or NULL. */
nn_tensor *nn_arena_find(const nn_arena *a, const char *name);

size_t nn_shape_numel(int ndim, const int *shape);
/* Writes "(2, 3, 4)" into buf. */
void nn_shape_str(char *buf, size_t len, int ndim, const int *shape);

#endif
