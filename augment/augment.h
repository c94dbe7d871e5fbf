/* augment: random image augmentations for self-supervised learning (libaugment.a).
 *
 * A recipe is a list of operations, each with a probability; applying it to one
 * decoded image gives K views of side S (C, S, S), float32 (optionally
 * normalised) or uint8. All randomness comes from (seed, epoch, dataset index,
 * view number, operation position) through a counter-based generator, so every
 * worker computes the same views for the same sample.
 *
 * How the work is done, per view:
 *   1. geometry: the crop box and flip of the recipe are chosen, then one
 *      separable resampling pass (triangle filter, antialiased when shrinking)
 *      goes from the uint8 HWC source straight into a planar float (C, S, S)
 *      working image in [0, 1];
 *   2. colour operations (jitter, gray) are folded into one 3x4 affine matrix;
 *      the matrix is applied in a single pass only when a spatial operation
 *      needs the pixels, otherwise it is fused into the final write;
 *   3. spatial operations (rotate, cutout, noise, blur, sobel, and the
 *      libvips steps vips:NAME and jpeg) run in recipe order on the working
 *      image; a libvips step sees the view as 8-bit pixels (vipsstep.h);
 *   4. one final pass clamps, normalises and converts to the output type.
 * Crop and flip act on the source image, so a recipe must list them before
 * the spatial operations (colour operations may come first; contrast then uses
 * the mean of the cropped view).
 *
 * Functions that can fail return -1 or NULL and write the reason into the
 * caller's buffer (char *err, size_t errlen; errmsg/errmsg.h), AUG_ERR_MAX
 * bytes being enough. Not thread-safe per aug_t: each worker owns one.
 */
#ifndef AUGMENTER_AUGMENT_H
#define AUGMENTER_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#define AUG_MAX_OPS      32u
#define AUG_MAX_VIEWS    16u   /* views per sample (PROTO_MAX_VIEWS) */
#define AUG_MAX_SIDE     4096u /* output side */
#define AUG_ROTATE_RANDOM (-1) /* rotate: k uniform in 0..3 */
#define AUG_ROTATE_VIEW   (-2) /* rotate: k = view number mod 4 (RotNet) */
#define AUG_ERR_MAX      512u  /* room for any of this library's error messages */
#define AUG_ROTATE_CLASSES 4u  /* rotate: k in 0..3 */
#define AUG_MAX_TARGET_CLASSES 4096u /* product of the emitting items' choices */

typedef enum {
    AUG_OP_CROP = 0,   /* random resized crop: scale and aspect-ratio ranges */
    AUG_OP_FLIP,       /* horizontal flip */
    AUG_OP_GRAY,       /* colour drop: grayscale kept as C channels */
    AUG_OP_JITTER,     /* brightness, contrast, saturation, hue in random order */
    AUG_OP_ROTATE,     /* rotation by k x 90 degrees, k is the view's target */
    AUG_OP_CUTOUT,     /* a random square set to zero or to the mean */
    AUG_OP_NOISE,      /* additive Gaussian noise */
    AUG_OP_BLUR,       /* Gaussian blur, sigma range, kernel a fraction of the side */
    AUG_OP_SOBEL,      /* Sobel gradient magnitude of the luminance */
    AUG_OP_ORIGINAL,   /* identity (the image resized to the output side) */
    AUG_OP_VIPS,       /* vips:NAME: a libvips operation, one image in, one out */
    AUG_OP_JPEG,       /* jpeg: JPEG save and load at a random quality (libvips) */
    AUG_OP_COUNT
} aug_op_kind_t;

/* One operation of a recipe with its parameters; unused fields are ignored. */
typedef struct {
    aug_op_kind_t kind;
    float p;                 /* probability of applying, 0..1 */
    int per_sample;          /* 1: same random choice for every view of a sample */
    float lo, hi;            /* crop: area scale range; blur: sigma range */
    float ratio_lo, ratio_hi;/* crop: aspect-ratio (w/h) range */
    float jitter[4];         /* jitter: brightness, contrast, saturation, hue */
    float sigma;             /* noise: standard deviation on the 0..1 scale */
    float size;              /* cutout side: pixels if >= 1, else a fraction of the side */
    int fill_mean;           /* cutout: 1 fills with the channel mean, 0 with zero */
    int k;                   /* rotate: 0..3, AUG_ROTATE_RANDOM or AUG_ROTATE_VIEW */
    float kernel;            /* blur: kernel side as a fraction of the image side */
    uint32_t step;           /* vips, jpeg: index into the recipe's steps[] */
    int target;              /* 1: the item's random choice is a digit of the view's
                                target (":target"): rotate's k (4 classes), else
                                applied or not (2 classes) */
} aug_op_t;

/* ---- libvips steps: plain data, checked against libvips when parsed ---- */
#define AUG_MAX_STEPS        8u    /* vips: and jpeg items per recipe */
#define AUG_STEP_MAX_ARGS    8u    /* arguments given per step */
#define AUG_STEP_MAX_VALUES  4u    /* elements of an array argument (a/b/c) */
#define AUG_STEP_NAME_LEN    32u
#define AUG_STEP_TEXT_LEN    48u

typedef enum {
    AUG_ARG_INT = 0,         /* drawn uniformly in [lo, hi], both included */
    AUG_ARG_DOUBLE,          /* drawn uniformly in [lo, hi) */
    AUG_ARG_BOOL,            /* lo: 0 or 1 */
    AUG_ARG_ENUM,            /* lo: the enum's value */
    AUG_ARG_STRING,          /* text */
    AUG_ARG_INT_ARRAY,       /* n elements, each drawn like AUG_ARG_INT */
    AUG_ARG_DOUBLE_ARRAY,    /* n elements, each drawn like AUG_ARG_DOUBLE */
} aug_arg_kind_t;

/* One argument of a step as the recipe gives it: name=text. */
typedef struct {
    char name[AUG_STEP_NAME_LEN];   /* libvips's argument name */
    char text[AUG_STEP_TEXT_LEN];   /* the value as written, for logs */
    aug_arg_kind_t kind;
    uint32_t n;                     /* values: 1, or the array's elements */
    double lo[AUG_STEP_MAX_VALUES], hi[AUG_STEP_MAX_VALUES];
} aug_step_arg_t;

/* A vips:NAME step (the operation's nickname, as `vips -l` lists it) or a
 * jpeg step (name "jpeg", one argument Q). */
typedef struct {
    char name[AUG_STEP_NAME_LEN];
    int jpeg;                       /* 1: JPEG round trip, not an operation */
    uint32_t n_args;
    aug_step_arg_t args[AUG_STEP_MAX_ARGS];
} aug_step_t;

typedef struct {
    char name[64];           /* "simclr", "rotnet", "supervised" or "custom" */
    uint32_t views;          /* K views per sample */
    uint32_t n_ops;
    aug_op_t ops[AUG_MAX_OPS];
    uint32_t n_steps;
    aug_step_t steps[AUG_MAX_STEPS];   /* the vips and jpeg items' details */
    uint32_t target_classes; /* product of the ":target" items' choices, 0 when none */
} aug_recipe_t;

/* Fills r from `text`: "simclr", "rotnet", "supervised" (one view: crop and
 * flip, no colour change), or a custom list such as
 *   crop:scale=0.2-1,flip:p=0.5,jitter:s=0.5:p=0.8,gray:p=0.2,blur:sigma=0.1-2:p=0.5
 * with "views=K" anywhere in the list, and libvips steps such as
 *   vips:sharpen:sigma=0.5-2:p=0.3,vips:rotate:angle=-15-15,jpeg:q=30-90
 * Any item may end in ":target": its random choice becomes part of the
 * view's target (a pretext task): rotate:k=random:target gives k (4
 * classes), any other item whether it was applied (2 classes, so its p must
 * be strictly between 0 and 1). With several, the target is their
 * mixed-radix number, the first such item the most significant digit:
 * rotate:k=random:target,flip:target gives 2 k + flipped, 8 classes.
 * (checked against libvips's own description of the operation: libvips is
 * initialised here if it is not yet). `size` is the output side, which the
 * named recipes depend on (SimCLR: crop scale 0.2-1 and no blur at 64 px or
 * less; supervised: crop scale 0.35-1 at 64 px or less, else 0.08-1). Returns 0, or -1 with err (at most
 * AUG_ERR_MAX bytes are useful) naming the item at fault. */
int aug_recipe_parse(aug_recipe_t *r, const char *text, uint32_t size, char *err, size_t errlen);
/* Writes the canonical text of r into buf (for logs); returns buf. */
const char *aug_recipe_format(const aug_recipe_t *r, char *buf, size_t len);

typedef enum { AUG_DTYPE_F32 = 0, AUG_DTYPE_U8 = 1 } aug_dtype_t;

typedef struct {
    uint32_t size;           /* output side S */
    uint32_t channels;       /* output channels C: 1 or 3 */
    aug_dtype_t dtype;       /* f32: [0,1] or normalised; u8: 0..255, never normalised */
    int normalize;           /* f32 only: (x - mean[c]) / std[c] */
    float mean[3], std[3];
    uint64_t seed;
} aug_config_t;

/* A decoded image to augment: (H, W, C) uint8, C = 1..4 (2 and 4: alpha ignored). */
typedef struct {
    const uint8_t *pixels;
    uint32_t height, width, channels;
    uint64_t index;          /* dataset index */
    uint32_t epoch;
} aug_image_t;

typedef struct aug aug_t;

/* Copies recipe and cfg. NULL with err filled on bad configuration. */
aug_t *aug_new(const aug_recipe_t *recipe, const aug_config_t *cfg, char *err, size_t errlen);
void aug_destroy(aug_t **self_p);

uint32_t aug_views_per_sample(const aug_t *a);
/* The number of classes of the views' targets: the recipe's target_classes
 * when it has ":target" items, else 4 when it rotates (the target is then
 * the sum of the rotations' k mod 4, as RotNet's recipe gives), else 0 (every
 * target is -1). */
uint32_t aug_target_classes(const aug_t *a);
size_t aug_view_bytes(const aug_t *a);      /* C * S * S * element size */

/* All K views of img into out (K, C, S, S) and their targets (K) (-1: none).
 * -1 with err filled when a libvips step fails or img is malformed. */
int aug_sample(aug_t *a, const aug_image_t *img, void *out, int32_t *targets, char *err, size_t errlen);
/* One view (view number `view`) into out (C, S, S). */
int aug_view(aug_t *a, const aug_image_t *img, uint32_t view, void *out, int32_t *target, char *err, size_t errlen);


/* ---- batching: several samples' views in one contiguous buffer ---- */
typedef struct {
    uint32_t capacity;       /* samples */
    uint32_t n;              /* samples filled */
    uint32_t views;          /* K */
    size_t sample_bytes;     /* K * view bytes */
    uint8_t *data;           /* (capacity, K, C, S, S) */
    uint64_t *index;         /* (capacity) */
    uint32_t *epoch;         /* (capacity) */
    int32_t *label;          /* (capacity) */
    int32_t *target;         /* (capacity, K) */
} aug_batch_t;

int aug_batch_init(aug_batch_t *b, const aug_t *a, uint32_t capacity, char *err, size_t errlen);
void aug_batch_release(aug_batch_t *b);
static inline void aug_batch_reset(aug_batch_t *b) { b->n = 0; }
static inline int aug_batch_full(const aug_batch_t *b) { return b->n >= b->capacity; }
/* Augments img into the next slot. -1 when full or on error. */
int aug_batch_add(aug_batch_t *b, aug_t *a, const aug_image_t *img, int32_t label, char *err, size_t errlen);

#endif
