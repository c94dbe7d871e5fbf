/* evaluator/figure: small libvips helpers shared by the figures (class map,
 * attention comparison): 8-bit RGB images on a white background, text
 * labels, joins.
 *
 * Each function returns a new image (the caller unrefs it) or NULL with the
 * reason in vips_error_buffer(); the join functions take ownership of their
 * inputs (unref them) whatever the outcome, so a chain of joins needs no
 * clean-up of its intermediate images.
 */
#ifndef EVALUATOR_FIGURE_H
#define EVALUATOR_FIGURE_H

#include <stdint.h>
#include <vips/vips.h>

#define EVAL_FIGURE_DPI    90       /* text size of labels */
#define EVAL_FIGURE_WHITE  255.0

/* A copy of rgb (h, w, 3) as an sRGB image. */
VipsImage *eval_figure_rgb(const uint8_t *rgb, int w, int h);

/* Black text on white (read as pango markup: no bare '&' or '<'). */
VipsImage *eval_figure_text(const char *text, int dpi);

/* a above b (vertical) or a left of b, `gap` white pixels between. Takes
 * ownership of a and b; NULL when either is NULL (a failed step upstream). */
VipsImage *eval_figure_join(VipsImage *a, VipsImage *b, int vertical, int gap);

/* im with `border` white pixels on every side. Takes ownership of im. */
VipsImage *eval_figure_pad(VipsImage *im, int border);

/* The colour (r, g, b) of class c of k: ten fixed distinct colours, then hues spread
 * by the golden ratio. */
void eval_figure_class_colour(int c, uint8_t rgb[3]);

#endif
