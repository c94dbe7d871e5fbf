/* evaluator/figure: libvips helpers for the figures (figure.h). */
#include "evaluator/figure.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_RATIO_CONJ 0.618033988749895

static VipsImage *as_srgb(VipsImage *im)
{
    VipsImage *out = NULL;
    if (im && vips_copy(im, &out, "interpretation", VIPS_INTERPRETATION_sRGB, NULL))
        out = NULL;
    if (im)
        g_object_unref(im);
    return out;
}

VipsImage *eval_figure_rgb(const uint8_t *rgb, int w, int h)
{
    return as_srgb(vips_image_new_from_memory_copy(rgb, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR));
}

VipsImage *eval_figure_text(const char *text, int dpi)
{
    VipsImage *t = NULL, *inv = NULL, *three = NULL;
    if (vips_text(&t, text && text[0] ? text : " ", "dpi", dpi, NULL))
        return NULL;
    if (vips_invert(t, &inv, NULL))
        inv = NULL;
    g_object_unref(t);
    if (!inv)
        return NULL;
    VipsImage *bands[3] = { inv, inv, inv };
    if (vips_bandjoin(bands, &three, 3, NULL))
        three = NULL;
    g_object_unref(inv);
    return as_srgb(three);
}

VipsImage *eval_figure_join(VipsImage *a, VipsImage *b, int vertical, int gap)
{
    if (!a || !b) {                 /* an earlier step failed: pass the failure on */
        if (a) g_object_unref(a);
        if (b) g_object_unref(b);
        return NULL;
    }
    VipsImage *out = NULL;
    VipsArrayDouble *bg = vips_array_double_newv(1, EVAL_FIGURE_WHITE);
    if (vips_join(a, b, &out, vertical ? VIPS_DIRECTION_VERTICAL : VIPS_DIRECTION_HORIZONTAL, "expand", TRUE,
                  "shim", gap, "background", bg, NULL))
        out = NULL;
    vips_area_unref(VIPS_AREA(bg));
    g_object_unref(a);
    g_object_unref(b);
    return out ? as_srgb(out) : NULL;
}

VipsImage *eval_figure_pad(VipsImage *im, int border)
{
    if (!im)
        return NULL;
    VipsImage *out = NULL;
    if (vips_embed(im, &out, border, border, vips_image_get_width(im) + 2 * border,
                   vips_image_get_height(im) + 2 * border, "extend", VIPS_EXTEND_WHITE, NULL))
        out = NULL;
    g_object_unref(im);
    return out ? as_srgb(out) : NULL;
}

void eval_figure_class_colour(int c, uint8_t rgb[3])
{
    static const uint8_t fixed[10][3] = {
        { 31, 100, 180 }, { 240, 120, 20 }, { 40, 160, 50 }, { 210, 35, 40 }, { 145, 100, 190 },
        { 140, 85, 75 }, { 225, 115, 195 }, { 120, 120, 120 }, { 185, 190, 30 }, { 20, 190, 205 },
    };
    if (c >= 0 && c < 10) {
        memcpy(rgb, fixed[c], 3);
        return;
    }
    double h = fmod((double)c * GOLDEN_RATIO_CONJ, 1.0) * 6.0, s = 0.75, v = 0.85;
    int i = (int)h;
    double f = h - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    double r, g, b;
    switch (i % 6) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
    }
    rgb[0] = (uint8_t)lround(255 * r);
    rgb[1] = (uint8_t)lround(255 * g);
    rgb[2] = (uint8_t)lround(255 * b);
}
