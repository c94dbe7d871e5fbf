/* evaluator/attention: per-stage attention maps, their PNG and the
 * two-checkpoint comparison (attention.h).
 *
 * The stage activations come from a network cut after each stage
 * (eval_stage_desc) whose parameters are copied by name from the whole one;
 * the picture is put together and written with libvips.
 */
#include "errmsg/errmsg.h"
#include "evaluator/attention.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "evaluator/figure.h"
#include "evaluator/readout.h"
#include "evaluator/stages.h"
#include "nn/tensor.h"

#define HEAT_WEIGHT   0.55   /* share of the false-colour map in a blended tile */
#define TILE_GAP      2      /* pixels between tiles */
#define BACKGROUND    255.0  /* white */
#define COMPARE_MIN_SIDE  128    /* comparison tiles: wide enough for their column label */
#define COMPARE_LABEL_DPI 80
#define COMPARE_STAGES    3      /* first, middle, last */
#define COMPARE_PANEL_GAP 28

/* Stage activations (count, C*H*W) of the first count images. */
static float *stage_activations(nn_net *net, const char *sdesc, const float *x, int count, int expect,
                                char *err, size_t errlen)
{
    char nerr[1024];
    nn_net *cut = nn_net_new(sdesc, count, nerr, sizeof nerr);
    if (!cut) {
        errmsg_set(err, errlen, "cut network: %s", nerr);
        return NULL;
    }
    if (eval_copy_params(cut, net, nerr, sizeof nerr)) {
        errmsg_set(err, errlen, "cut network: %s", nerr);
        nn_net_destroy(&cut);
        return NULL;
    }
    if (nn_net_feat_dim(cut) != expect) {
        errmsg_set(err, errlen, "cut network gives %d values per image, expected %d", nn_net_feat_dim(cut), expect);
        nn_net_destroy(&cut);
        return NULL;
    }
    float *out = malloc((size_t)count * expect * sizeof *out);
    if (out)
        memcpy(out, nn_net_forward_features(cut, x, count), (size_t)count * expect * sizeof *out);
    else
        errmsg_set(err, errlen, "out of memory");
    nn_net_destroy(&cut);
    return out;
}

/* Attention maps (count, H, W) of stage s of net for the images x; sdesc
 * (NN_MAX_DESC) is scratch. NULL with err. */
static float *stage_maps(nn_net *net, const eval_stage_list *st, int s, const float *x, int count, char *sdesc,
                         char *err, size_t errlen)
{
    int dim = st->c[s] * st->h[s] * st->w[s];
    if (eval_stage_desc(nn_net_desc(net), st, s, sdesc, NN_MAX_DESC, err, errlen))
        return NULL;
    float *a = stage_activations(net, sdesc, x, count, dim, err, errlen);
    if (!a)
        return NULL;
    float *maps = malloc((size_t)count * st->h[s] * st->w[s] * sizeof *maps);
    if (maps)
        eval_attention_maps(maps, a, count, st->c[s], st->h[s], st->w[s]);
    else
        errmsg_set(err, errlen, "out of memory");
    free(a);
    return maps;
}

/* Bilinear upsampling (pixel centres aligned) of m (h, w), scaled to 0..255
 * by its maximum, into out (oh, ow). */
static void upsample_u8(uint8_t *out, int oh, int ow, const float *m, int h, int w)
{
    float mx = 0.0f;
    for (int i = 0; i < h * w; i++)
        if (m[i] > mx) mx = m[i];
    float scale = mx > 0.0f ? 255.0f / mx : 0.0f;
    for (int y = 0; y < oh; y++) {
        float fy = ((float)y + 0.5f) * (float)h / (float)oh - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < h ? y0 + 1 : y0;
        float ay = fy - (float)y0;
        for (int x = 0; x < ow; x++) {
            float fx = ((float)x + 0.5f) * (float)w / (float)ow - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < w ? x0 + 1 : x0;
            float ax = fx - (float)x0;
            float v = (1 - ay) * ((1 - ax) * m[y0 * w + x0] + ax * m[y0 * w + x1]) +
                      ay * ((1 - ax) * m[y1 * w + x0] + ax * m[y1 * w + x1]);
            float s = v * scale + 0.5f;
            out[y * ow + x] = (uint8_t)(s > 255.0f ? 255.0f : s);
        }
    }
}

/* The image as an enlarged 3-band tile; NULL on error (vips_error_buffer). */
static VipsImage *image_tile(const uint8_t *hwc, int h, int w, int c, int factor)
{
    VipsImage *in = vips_image_new_from_memory_copy(hwc, (size_t)h * w * c, w, h, c, VIPS_FORMAT_UCHAR);
    VipsImage *rgb = NULL, *big = NULL;
    if (!in)
        return NULL;
    if (c == 1) {
        VipsImage *three[3] = { in, in, in };
        if (vips_bandjoin(three, &rgb, 3, NULL))
            rgb = NULL;
    } else if (c == 3) {
        rgb = in;
        g_object_ref(rgb);
    } else if (vips_extract_band(in, &rgb, 0, "n", 3, NULL))
        rgb = NULL;
    g_object_unref(in);
    if (!rgb)
        return NULL;
    VipsImage *tagged = NULL;
    if (vips_resize(rgb, &big, (double)factor, "kernel", VIPS_KERNEL_NEAREST, NULL) ||
        vips_copy(big, &tagged, "interpretation", VIPS_INTERPRETATION_sRGB, NULL))
        tagged = NULL;
    g_object_unref(rgb);
    if (big)
        g_object_unref(big);
    return tagged;
}

/* A map over its image tile: false colour blended with the image. */
static VipsImage *map_tile(VipsImage *base, const float *m, int h, int w)
{
    int oh = vips_image_get_height(base), ow = vips_image_get_width(base);
    uint8_t *u = malloc((size_t)oh * ow);
    if (!u)
        return NULL;
    upsample_u8(u, oh, ow, m, h, w);
    VipsImage *gray = vips_image_new_from_memory_copy(u, (size_t)oh * ow, ow, oh, 1, VIPS_FORMAT_UCHAR);
    free(u);
    VipsImage *heat = NULL, *a = NULL, *b = NULL, *sum = NULL, *cast = NULL, *out = NULL;
    if (!gray || vips_falsecolour(gray, &heat, NULL) ||
        vips_linear1(heat, &a, HEAT_WEIGHT, 0.0, NULL) ||
        vips_linear1(base, &b, 1.0 - HEAT_WEIGHT, 0.0, NULL) ||
        vips_add(a, b, &sum, NULL) ||
        vips_cast_uchar(sum, &cast, NULL) ||
        vips_copy(cast, &out, "interpretation", VIPS_INTERPRETATION_sRGB, NULL))
        out = NULL;
    if (cast) g_object_unref(cast);
    if (gray) g_object_unref(gray);
    if (heat) g_object_unref(heat);
    if (a) g_object_unref(a);
    if (b) g_object_unref(b);
    if (sum) g_object_unref(sum);
    return out;
}

int eval_attention_pick(const eval_images *im, int count, size_t *idx)
{
    int found = 0;
    size_t *next = calloc((size_t)(im->n_classes > 0 ? im->n_classes : 1), sizeof *next);
    if (!next)
        return 0;
    /* round r takes the r-th item of each class, while there are any */
    for (int round = 0, progress = 1; found < count && progress; round++) {
        progress = 0;
        for (int c = 0; c < im->n_classes && found < count; c++) {
            while (next[c] < im->n && im->labels[next[c]] != c)
                next[c]++;
            if (next[c] < im->n) {
                idx[found++] = next[c]++;
                progress = 1;
            }
        }
    }
    free(next);
    return found;
}

int eval_attention_png(nn_net *net, const eval_images *im, const size_t *idx, int count, const char *path,
                       char *err, size_t errlen)
{
    if (count < 1) {
        errmsg_set(err, errlen, "no image for the attention maps");
        return -1;
    }
    const char *desc = nn_net_desc(net);
    eval_stage_list st;
    if (eval_stages_find(desc, &st, err, errlen))
        return -1;
    size_t img = (size_t)im->c * im->h * im->w;
    float *x = malloc((size_t)count * img * sizeof *x);
    float **maps = calloc((size_t)st.n, sizeof *maps);
    char *sdesc = malloc(NN_MAX_DESC);
    int cols = st.n + 1, n_tiles = count * cols, rc = -1;
    VipsImage **tiles = calloc((size_t)n_tiles, sizeof *tiles), *grid = NULL;
    VipsArrayDouble *bg = vips_array_double_newv(1, BACKGROUND);
    if (!x || !maps || !sdesc || !tiles) {
        errmsg_set(err, errlen, "out of memory");
        goto done;
    }
    for (int n = 0; n < count; n++)
        eval_images_to_float(im, idx[n], 1, x + (size_t)n * img);
    for (int s = 0; s < st.n; s++)
        if (!(maps[s] = stage_maps(net, &st, s, x, count, sdesc, err, errlen)))
            goto done;
    int factor = (EVAL_ATTENTION_MIN_SIDE + im->h - 1) / im->h;
    if (factor < 1)
        factor = 1;
    for (int n = 0; n < count; n++) {
        VipsImage *base = image_tile(im->pixels + idx[n] * img, im->h, im->w, im->c, factor);
        if (!base)
            goto vips_fail;
        tiles[n * cols] = base;
        for (int s = 0; s < st.n; s++) {
            const float *m = maps[s] + (size_t)n * st.h[s] * st.w[s];
            if (!(tiles[n * cols + 1 + s] = map_tile(base, m, st.h[s], st.w[s])))
                goto vips_fail;
        }
    }
    if (vips_arrayjoin(tiles, &grid, n_tiles, "across", cols, "shim", TILE_GAP, "background", bg, NULL) ||
        vips_pngsave(grid, path, NULL))
        goto vips_fail;
    rc = 0;
    goto done;
vips_fail:
    errmsg_set(err, errlen, "libvips: %s", vips_error_buffer());
    vips_error_clear();
done:
    if (tiles)
        for (int i = 0; i < n_tiles; i++)
            if (tiles[i]) g_object_unref(tiles[i]);
    if (grid) g_object_unref(grid);
    vips_area_unref(VIPS_AREA(bg));
    if (maps)
        for (int s = 0; s < st.n; s++)
            free(maps[s]);
    free(maps); free(tiles); free(x); free(sdesc);
    return rc;
}

/* A column label centred over a tile of width w. */
static VipsImage *column_label(const char *text, int w)
{
    VipsImage *t = eval_figure_text(text, COMPARE_LABEL_DPI), *out = NULL;
    if (!t)
        return NULL;
    int tw = vips_image_get_width(t), th = vips_image_get_height(t);
    int width = tw > w ? tw : w;
    if (vips_embed(t, &out, (width - tw) / 2, 0, width, th, "extend", VIPS_EXTEND_WHITE, NULL))
        out = NULL;
    g_object_unref(t);
    return out;
}

/* One panel of the comparison: its title, a row of column labels, then one row
 * per image: the image and the maps of the chosen stages. */
static VipsImage *compare_panel(nn_net *net, const char *title, const eval_images *im, const size_t *idx,
                                int count, const float *x, char *err, size_t errlen)
{
    eval_stage_list st;
    if (eval_stages_find(nn_net_desc(net), &st, err, errlen))
        return NULL;
    int sel[COMPARE_STAGES], n_sel = 0;
    int want[COMPARE_STAGES] = { 0, (st.n - 1) / 2, st.n - 1 };
    for (int i = 0; i < COMPARE_STAGES; i++)           /* fewer when the encoder has fewer stages */
        if (n_sel == 0 || want[i] > sel[n_sel - 1])
            sel[n_sel++] = want[i];
    int cols = n_sel + 1, n_tiles = count * cols, factor = (COMPARE_MIN_SIDE + im->h - 1) / im->h;
    size_t img = (size_t)im->c * im->h * im->w;
    float *maps[COMPARE_STAGES] = { NULL };
    char *sdesc = malloc(NN_MAX_DESC);
    VipsImage **tiles = calloc((size_t)n_tiles + cols, sizeof *tiles), *grid = NULL, *panel = NULL;
    VipsArrayDouble *bg = vips_array_double_newv(1, BACKGROUND);
    if (!sdesc || !tiles) {
        errmsg_set(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_sel; i++)
        if (!(maps[i] = stage_maps(net, &st, sel[i], x, count, sdesc, err, errlen)))
            goto done;
    char text[64];
    snprintf(text, sizeof text, "input, %dx%d", im->h, im->w);
    tiles[0] = column_label(text, im->w * factor);
    for (int i = 0; i < n_sel; i++) {
        snprintf(text, sizeof text, "stage %d, %dx%d", sel[i] + 1, st.h[sel[i]], st.w[sel[i]]);
        tiles[1 + i] = column_label(text, im->w * factor);
    }
    for (int n = 0; n < count; n++) {
        VipsImage *base = image_tile(im->pixels + idx[n] * img, im->h, im->w, im->c, factor);
        tiles[cols + n * cols] = base;
        for (int i = 0; base && i < n_sel; i++)
            tiles[cols + n * cols + 1 + i] = map_tile(base, maps[i] + (size_t)n * st.h[sel[i]] * st.w[sel[i]],
                                                      st.h[sel[i]], st.w[sel[i]]);
    }
    for (int i = 0; i < n_tiles + cols; i++)
        if (!tiles[i])
            goto vips_fail;
    VipsImage *header = NULL;
    if (vips_arrayjoin(tiles, &header, cols, "across", cols, "shim", TILE_GAP, "background", bg, NULL))
        goto vips_fail;
    if (vips_arrayjoin(tiles + cols, &grid, n_tiles, "across", cols, "shim", TILE_GAP, "background", bg, NULL)) {
        g_object_unref(header);
        goto vips_fail;
    }
    panel = eval_figure_join(eval_figure_text(title, EVAL_FIGURE_DPI + 10),
                             eval_figure_join(header, grid, 1, 4), 1, 6);
    grid = NULL;
    if (!panel)
        goto vips_fail;
    goto done;
vips_fail:
    errmsg_set(err, errlen, "libvips: %s", vips_error_buffer());
    vips_error_clear();
done:
    if (tiles)
        for (int i = 0; i < n_tiles + cols; i++)
            if (tiles[i]) g_object_unref(tiles[i]);
    if (grid) g_object_unref(grid);
    vips_area_unref(VIPS_AREA(bg));
    for (int i = 0; i < COMPARE_STAGES; i++)
        free(maps[i]);
    free(sdesc); free(tiles);
    return panel;
}

int eval_attention_compare_png(nn_net *const nets[2], const char *const titles[2], const eval_images *im,
                               const size_t *idx, int count, const char *path, char *err, size_t errlen)
{
    if (count < 1) {
        errmsg_set(err, errlen, "no image for the comparison");
        return -1;
    }
    size_t img = (size_t)im->c * im->h * im->w;
    float *x = malloc((size_t)count * img * sizeof *x);
    if (!x) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    for (int n = 0; n < count; n++)
        eval_images_to_float(im, idx[n], 1, x + (size_t)n * img);
    VipsImage *panel[2] = { NULL, NULL };
    char perr[1024];
    int rc = -1;
    for (int p = 0; p < 2; p++)
        if (!(panel[p] = compare_panel(nets[p], titles[p], im, idx, count, x, perr, sizeof perr))) {
            errmsg_set(err, errlen, "%s: %s", titles[p], perr);
            if (panel[0]) g_object_unref(panel[0]);
            goto done;
        }
    VipsImage *fig = eval_figure_pad(eval_figure_join(panel[0], panel[1], 0, COMPARE_PANEL_GAP), TILE_GAP * 4);
    if (!fig || vips_pngsave(fig, path, NULL)) {
        errmsg_set(err, errlen, "%s: libvips: %s", path, vips_error_buffer());
        vips_error_clear();
    } else
        rc = 0;
    if (fig)
        g_object_unref(fig);
done:
    free(x);
    return rc;
}
