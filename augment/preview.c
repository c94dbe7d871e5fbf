/* preview: the augmentation grid (see preview.h), assembled with libvips. */
#include "augment/preview.h"
#include "augment/augment.h"
#include "errmsg/errmsg.h"
#include "augment/vipsstep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#define PREVIEW_MAX_SIDE     224u   /* default view side for large images */
#define PREVIEW_MIN_TILE     160    /* small views are enlarged to at least this */
#define PREVIEW_ACROSS       4      /* tiles per row */
#define PREVIEW_GAP          8      /* pixels between tiles */
#define PREVIEW_LABEL_DPI    96
#define PREVIEW_LABEL_FONT   "sans 11"
#define PREVIEW_MAX_EXTRA    AUG_MAX_STEPS   /* tiles for a recipe's own libvips steps */

/* The tiles: a label and the recipe that shows one operation at full effect. */
typedef struct {
    const char *label;
    const char *recipe;
} tile_t;

static const tile_t tiles[] = {
    {"10. original", "original"},
    {"1. random crop", "crop:scale=0.15-0.4:p=1"},
    {"2. crop + flip", "crop:scale=0.15-0.4:p=1,flip:p=1"},
    {"3. colour drop", "gray:p=1"},
    {"4. colour jitter", "jitter:s=1:p=1"},
    {"5. rotate 90", "rotate:k=1"},
    {"6. cutout", "cutout:size=0.35"},
    {"7. gaussian noise", "noise:sigma=0.1"},
    {"8. gaussian blur", "blur:sigma=1.5-2:p=1:kernel=0.2"},
    {"9. sobel", "sobel"},
    {"simclr view", "simclr"},
    {"vips:sharpen", "vips:sharpen:sigma=1.5:m2=4"},
    {"vips:rotate angle=20", "vips:rotate:angle=20"},
    {"vips:rank (median)", "vips:rank:width=5:height=5:index=12"},
    {"jpeg q=10", "jpeg:q=10"},
};
#define N_TILES (sizeof(tiles) / sizeof(tiles[0]))
#define MAX_CELLS (1 + N_TILES + PREVIEW_MAX_EXTRA)

static int vips_fail(const char *what, char *err, size_t errlen)
{
    errmsg_set(err, errlen, "preview: %s: %s", what, vips_error_buffer());
    vips_error_clear();
    return -1;
}

/* A labeled tile: label above the image, on white. Takes ownership of img. */
static int label_tile(VipsImage **out, VipsImage *img, const char *label, int tile, char *err, size_t errlen)
{
    VipsImage *text = NULL, *ink = NULL, *lab = NULL, *top = NULL, *joined = NULL;
    int rc = -1;
    if (vips_text(&text, label, "font", PREVIEW_LABEL_FONT, "dpi", PREVIEW_LABEL_DPI, NULL)) {
        vips_fail("vips_text", err, errlen);
        goto done;
    }
    /* text is a 0..255 coverage mask: black ink on white, three bands */
    if (vips_invert(text, &ink, NULL)) {
        vips_fail("label", err, errlen);
        goto done;
    }
    VipsImage *bands[3] = {ink, ink, ink};
    if (vips_bandjoin(bands, &lab, 3, NULL) ||
        vips_embed(lab, &top, 0, 2, tile, lab->Ysize + 6, "extend", VIPS_EXTEND_WHITE, NULL)) {
        vips_fail("label", err, errlen);
        goto done;
    }
    VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
    int failed = vips_join(top, img, &joined, VIPS_DIRECTION_VERTICAL, "background", white, NULL);
    vips_area_unref(VIPS_AREA(white));
    if (failed) {
        vips_fail("label join", err, errlen);
        goto done;
    }
    *out = joined;
    joined = NULL;
    rc = 0;
done:
    if (text) g_object_unref(text);
    if (ink) g_object_unref(ink);
    if (lab) g_object_unref(lab);
    if (top) g_object_unref(top);
    if (joined) g_object_unref(joined);
    g_object_unref(img);
    return rc;
}

/* (C, S, S) planar uint8 view -> an S x S sRGB image enlarged by `zoom`. */
static int view_image(VipsImage **out, const uint8_t *planar, uint32_t S, int zoom, char *err, size_t errlen)
{
    size_t n = (size_t)S * S;
    uint8_t *hwc = malloc(3 * n);
    if (!hwc) {
        errmsg_set(err, errlen, "preview: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) hwc[i * 3 + c] = planar[c * n + i];
    VipsImage *mem = vips_image_new_from_memory_copy(hwc, 3 * n, (int)S, (int)S, 3, VIPS_FORMAT_UCHAR);
    free(hwc);
    if (!mem) return vips_fail("image from memory", err, errlen);
    mem->Type = VIPS_INTERPRETATION_sRGB;
    if (zoom <= 1) {
        *out = mem;
        return 0;
    }
    int rc = vips_zoom(mem, out, zoom, zoom, NULL) ? vips_fail("vips_zoom", err, errlen) : 0;
    g_object_unref(mem);
    return rc;
}

/* The input image, fitted in a tile x tile square. */
static int input_tile(VipsImage **out, VipsImage *src, int tile, char *err, size_t errlen)
{
    VipsImage *fit = NULL;
    double scale = (double)tile / (src->Xsize > src->Ysize ? src->Xsize : src->Ysize);
    const char *kernel_name = scale > 1.0 ? "nearest" : "lanczos3";
    VipsKernel kernel = scale > 1.0 ? VIPS_KERNEL_NEAREST : VIPS_KERNEL_LANCZOS3;
    if (vips_resize(src, &fit, scale, "kernel", kernel, NULL)) return vips_fail(kernel_name, err, errlen);
    int rc = vips_gravity(fit, out, VIPS_COMPASS_DIRECTION_CENTRE, tile, tile, "extend",
                          VIPS_EXTEND_WHITE, NULL) ? vips_fail("vips_gravity", err, errlen) : 0;
    g_object_unref(fit);
    return rc;
}

/* The tiles for the libvips steps of `text`, each alone at p = 1, labeled
 * with its recipe text; *n of them. */
static int extra_tiles(aug_recipe_t *extra, char labels[][AUG_RECIPE_LABEL_LEN], size_t *n,
                       const char *text, uint32_t size, char *err, size_t errlen)
{
    *n = 0;
    if (!text) return 0;
    aug_recipe_t *r = malloc(sizeof(*r));
    if (!r) {
        errmsg_set(err, errlen, "preview: out of memory");
        return -1;
    }
    if (aug_recipe_parse(r, text, size, err, errlen)) {
        free(r);
        return -1;
    }
    for (uint32_t i = 0; i < r->n_ops && *n < PREVIEW_MAX_EXTRA; i++) {
        const aug_op_t *op = &r->ops[i];
        if (op->kind != AUG_OP_VIPS && op->kind != AUG_OP_JPEG) continue;
        aug_recipe_t *one = &extra[*n];
        memset(one, 0, sizeof(*one));
        snprintf(one->name, sizeof(one->name), "custom");
        one->views = 1;
        one->n_ops = 1;
        one->ops[0] = *op;
        one->ops[0].p = 1.0f;
        one->ops[0].per_sample = 0;
        one->ops[0].step = 0;
        one->n_steps = 1;
        one->steps[0] = r->steps[op->step];
        aug_vips_format(&one->steps[0], labels[*n], AUG_RECIPE_LABEL_LEN);
        (*n)++;
    }
    free(r);
    return 0;
}

int aug_preview_write(const char *image_path, const char *out_path, uint32_t size, uint64_t seed,
                      char *err, size_t errlen)
{
    return aug_preview_write_recipe(image_path, out_path, size, seed, NULL, err, errlen);
}

int aug_preview_write_recipe(const char *image_path, const char *out_path, uint32_t size,
                             uint64_t seed, const char *recipe_text, char *err, size_t errlen)
{
    VipsImage *in = NULL, *srgb = NULL, *rgb = NULL, *u8 = NULL, *grid = NULL;
    VipsImage *cells[MAX_CELLS] = {0};
    uint8_t *pixels = NULL, *view = NULL;
    aug_t *a = NULL;
    aug_recipe_t *extra = NULL;
    char labels[PREVIEW_MAX_EXTRA][AUG_RECIPE_LABEL_LEN];
    size_t n_extra = 0;
    int rc = -1;

    if (!(in = vips_image_new_from_file(image_path, NULL))) {
        vips_fail(image_path, err, errlen);
        goto done;
    }
    if (vips_colourspace(in, &srgb, VIPS_INTERPRETATION_sRGB, NULL) ||
        vips_extract_band(srgb, &rgb, 0, "n", 3, NULL) || vips_cast_uchar(rgb, &u8, NULL)) {
        vips_fail("convert to 8-bit sRGB", err, errlen);
        goto done;
    }
    size_t len;
    if (!(pixels = vips_image_write_to_memory(u8, &len))) {
        vips_fail("decode", err, errlen);
        goto done;
    }
    uint32_t H = (uint32_t)u8->Ysize, W = (uint32_t)u8->Xsize;
    if (size == 0) {
        size = H < W ? H : W;
        if (size > PREVIEW_MAX_SIDE) size = PREVIEW_MAX_SIDE;
    }
    int zoom = (int)((PREVIEW_MIN_TILE + size - 1) / size);
    if (zoom < 1) zoom = 1;
    int tile = (int)size * zoom;
    VipsImage *fitted;
    if (input_tile(&fitted, u8, tile, err, errlen) || label_tile(&cells[0], fitted, "input", tile, err, errlen))
        goto done;
    view = malloc(3 * (size_t)size * size * AUG_MAX_VIEWS);
    extra = malloc(PREVIEW_MAX_EXTRA * sizeof(*extra));
    if (!view || !extra) {
        errmsg_set(err, errlen, "preview: out of memory");
        goto done;
    }
    if (extra_tiles(extra, labels, &n_extra, recipe_text, size, err, errlen)) goto done;
    for (size_t t = 0; t < N_TILES + n_extra; t++) {
        aug_recipe_t parsed, *r = &parsed;
        if (t >= N_TILES) r = &extra[t - N_TILES];
        else if (aug_recipe_parse(&parsed, tiles[t].recipe, size, err, errlen)) goto done;
        aug_config_t cfg = {.size = size, .channels = 3, .dtype = AUG_DTYPE_U8, .seed = seed};
        if (!(a = aug_new(r, &cfg, err, errlen))) goto done;
        aug_image_t im = {pixels, H, W, 3, 0, 0};
        if (aug_view(a, &im, 0, view, NULL, err, errlen)) goto done;
        aug_destroy(&a);
        VipsImage *img;
        const char *label = t < N_TILES ? tiles[t].label : labels[t - N_TILES];
        if (view_image(&img, view, size, zoom, err, errlen) || label_tile(&cells[t + 1], img, label, tile, err, errlen))
            goto done;
    }
    VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
    int joined = vips_arrayjoin(cells, &grid, (int)(N_TILES + n_extra + 1), "across", PREVIEW_ACROSS,
                                "shim", PREVIEW_GAP, "background", white, NULL);
    vips_area_unref(VIPS_AREA(white));
    if (joined) {
        vips_fail("vips_arrayjoin", err, errlen);
        goto done;
    }
    if (vips_pngsave(grid, out_path, NULL)) {
        vips_fail(out_path, err, errlen);
        goto done;
    }
    rc = 0;
done:
    aug_destroy(&a);
    free(view);
    free(extra);
    g_free(pixels);
    for (size_t i = 0; i < MAX_CELLS; i++)
        if (cells[i]) g_object_unref(cells[i]);
    if (grid) g_object_unref(grid);
    if (u8) g_object_unref(u8);
    if (rgb) g_object_unref(rgb);
    if (srgb) g_object_unref(srgb);
    if (in) g_object_unref(in);
    return rc;
}
