/* evaluator/classmap: maps, numbers and the PNG of the class map (classmap.h). */
#include "evaluator/classmap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "console/console.h"
#include "errmsg/errmsg.h"
#include "evaluator/embed.h"
#include "evaluator/figure.h"
#include "evaluator/probe.h"

#define PANEL        380     /* plot side, pixels */
#define PANEL_MARGIN 10      /* between the frame and the outermost dots */
#define DOT_RADIUS   2
#define FRAME_GREY   190
#define GAP          14      /* between panels */
#define LEGEND_SWATCH 12
#define N_METHODS    2       /* rows: t-SNE, PCA */

typedef struct {
    float *map[N_METHODS];   /* (n, 2) t-SNE, PCA */
    double purity[N_METHODS];
    double silhouette;
} rep_result;

static const char *method_name[N_METHODS] = { "t-SNE", "PCA" };

/* Standardised features, their PCA and t-SNE maps and numbers. */
static int map_rep(rep_result *r, const eval_classmap_rep *rep, const int32_t *labels, size_t n, int k,
                   uint64_t seed, atomic_int *stop, char *err, size_t errlen)
{
    int d = rep->d, m = d < EVAL_PCA_DIMS ? d : EVAL_PCA_DIMS, rc = -1;
    float *z = malloc(n * (size_t)d * sizeof *z), *pc = malloc(n * (size_t)m * sizeof *pc);
    double *mean = malloc((size_t)d * sizeof *mean), *inv = malloc((size_t)d * sizeof *inv);
    r->map[0] = malloc(2 * n * sizeof *r->map[0]);
    r->map[1] = calloc(2 * n, sizeof *r->map[1]);
    if (!z || !pc || !mean || !inv || !r->map[0] || !r->map[1]) {
        errmsg_set(err, errlen, "%s: out of memory for the class map of %zu points", rep->name, n);
        goto done;
    }
    eval_standardize_fit(mean, inv, rep->x, NULL, n, d);
    eval_standardize_apply(z, rep->x, NULL, n, d, mean, inv);
    if (eval_pca(pc, NULL, z, n, d, m, err, errlen))
        goto done;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 2 && j < m; j++)
            r->map[1][2 * i + j] = pc[i * m + j];
    eval_tsne_opts o;
    eval_tsne_defaults(&o);
    o.seed = seed;
    o.stop = stop;
    if (eval_tsne(r->map[0], pc, n, m, &o, err, errlen))
        goto done;
    for (int t = 0; t < N_METHODS; t++)
        r->purity[t] = eval_knn_purity(r->map[t], labels, n, 2, EVAL_PURITY_K);
    r->silhouette = eval_silhouette(z, labels, n, d, k);
    rc = 0;
done:
    free(z); free(pc); free(mean); free(inv);
    return rc;
}

static void put_pixel(uint8_t *buf, int x, int y, const uint8_t rgb[3])
{
    if (x >= 0 && x < PANEL && y >= 0 && y < PANEL)
        memcpy(buf + ((size_t)y * PANEL + x) * 3, rgb, 3);
}

/* One map as a PANEL x PANEL picture: dots coloured by class, the same scale on
 * both axes, a grey frame. */
static VipsImage *draw_map(const float *y, const int32_t *labels, size_t n)
{
    uint8_t *buf = malloc((size_t)PANEL * PANEL * 3);
    if (!buf)
        return NULL;
    memset(buf, 255, (size_t)PANEL * PANEL * 3);
    float lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY };
    for (size_t i = 0; i < n; i++)
        for (int a = 0; a < 2; a++) {
            if (y[2 * i + a] < lo[a]) lo[a] = y[2 * i + a];
            if (y[2 * i + a] > hi[a]) hi[a] = y[2 * i + a];
        }
    double span = fmax(hi[0] - lo[0], hi[1] - lo[1]), inner = PANEL - 2 * PANEL_MARGIN;
    double scale = span > 0 ? inner / span : 0.0;
    double off[2] = { PANEL_MARGIN + 0.5 * (inner - scale * (hi[0] - lo[0])),
                      PANEL_MARGIN + 0.5 * (inner - scale * (hi[1] - lo[1])) };
    for (size_t i = 0; i < n; i++) {
        uint8_t rgb[3];
        eval_figure_class_colour(labels[i], rgb);
        int cx = (int)lround(off[0] + scale * (y[2 * i] - lo[0]));
        int cy = (int)lround(PANEL - 1 - (off[1] + scale * (y[2 * i + 1] - lo[1])));   /* y up */
        for (int dy = -DOT_RADIUS; dy <= DOT_RADIUS; dy++)
            for (int dx = -DOT_RADIUS; dx <= DOT_RADIUS; dx++)
                if (dx * dx + dy * dy <= DOT_RADIUS * DOT_RADIUS + 1)
                    put_pixel(buf, cx + dx, cy + dy, rgb);
    }
    const uint8_t grey[3] = { FRAME_GREY, FRAME_GREY, FRAME_GREY };
    for (int t = 0; t < PANEL; t++) {
        put_pixel(buf, t, 0, grey); put_pixel(buf, t, PANEL - 1, grey);
        put_pixel(buf, 0, t, grey); put_pixel(buf, PANEL - 1, t, grey);
    }
    VipsImage *im = eval_figure_rgb(buf, PANEL, PANEL);
    free(buf);
    return im;
}

static VipsImage *legend(int k)
{
    VipsImage *row = NULL;
    for (int c = 0; c < k; c++) {
        uint8_t sw[LEGEND_SWATCH * LEGEND_SWATCH * 3], rgb[3];
        eval_figure_class_colour(c, rgb);
        for (int i = 0; i < LEGEND_SWATCH * LEGEND_SWATCH; i++)
            memcpy(sw + 3 * i, rgb, 3);
        char name[32];
        snprintf(name, sizeof name, "class %d", c);
        VipsImage *item = eval_figure_join(eval_figure_rgb(sw, LEGEND_SWATCH, LEGEND_SWATCH),
                                           eval_figure_text(name, EVAL_FIGURE_DPI), 0, 4);
        row = row ? eval_figure_join(row, item, 0, GAP) : item;
        if (!row)
            return NULL;
    }
    return row;
}

static int write_png(const char *path, const char *title, const eval_classmap_rep *reps, const rep_result *res,
                     int n_reps, const int32_t *labels, size_t n, int k, char *err, size_t errlen)
{
    VipsImage *fig = eval_figure_text(title, EVAL_FIGURE_DPI + 10);
    for (int t = 0; t < N_METHODS && fig; t++) {
        VipsImage *row = NULL;
        for (int r = 0; r < n_reps; r++) {
            char label[160];
            snprintf(label, sizeof label, "%s, %s\nkNN purity %.3f, silhouette %.3f", method_name[t], reps[r].name,
                     res[r].purity[t], res[r].silhouette);
            VipsImage *panel = eval_figure_join(eval_figure_text(label, EVAL_FIGURE_DPI),
                                                draw_map(res[r].map[t], labels, n), 1, 4);
            row = row ? eval_figure_join(row, panel, 0, GAP) : panel;
            if (!row)
                break;
        }
        fig = eval_figure_join(fig, row, 1, GAP);
    }
    fig = eval_figure_pad(eval_figure_join(fig, legend(k), 1, GAP), GAP);
    if (!fig || vips_pngsave(fig, path, NULL)) {
        errmsg_set(err, errlen, "class map %s: libvips: %s", path, vips_error_buffer());
        vips_error_clear();
        if (fig)
            g_object_unref(fig);
        return -1;
    }
    g_object_unref(fig);
    return 0;
}

static json_t *numbers(const rep_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "tsne_knn_purity", json_real(r->purity[0]));
    json_object_set_new(o, "pca_knn_purity", json_real(r->purity[1]));
    json_object_set_new(o, "silhouette", isfinite(r->silhouette) ? json_real(r->silhouette) : json_null());
    return o;
}

json_t *eval_classmap(const eval_classmap_rep *reps, int n_reps, const int32_t *labels, size_t n, int k,
                      uint64_t seed, atomic_int *stop, const char *png, const char *title,
                      char *err, size_t errlen)
{
    if (n_reps < 1 || n_reps > EVAL_CLASSMAP_MAX_REPS || n < 2) {
        errmsg_set(err, errlen, "class map: %d representations of %zu points: nothing to map", n_reps, n);
        return NULL;
    }
    double t0 = console_now();
    rep_result res[EVAL_CLASSMAP_MAX_REPS];
    memset(res, 0, sizeof res);
    json_t *obj = NULL;
    for (int r = 0; r < n_reps; r++) {
        double tr = console_now();
        if (map_rep(&res[r], &reps[r], labels, n, k, seed, stop, err, errlen))
            goto done;
        console_log("%s: class map of %zu points: kNN purity t-SNE %.3f, PCA %.3f, silhouette %.3f (%.1f s)",
                    reps[r].name, n, res[r].purity[0], res[r].purity[1], res[r].silhouette, console_now() - tr);
    }
    if (png && write_png(png, title, reps, res, n_reps, labels, n, k, err, errlen))
        goto done;
    obj = numbers(&res[0]);
    for (int r = 1; r < n_reps; r++)
        json_object_set_new(obj, reps[r].key, numbers(&res[r]));
    json_object_set_new(obj, "points", json_integer((json_int_t)n));
    json_object_set_new(obj, "k", json_integer(EVAL_PURITY_K));
    json_object_set_new(obj, "perplexity", json_real(EVAL_TSNE_PERPLEXITY));
    json_object_set_new(obj, "silhouette_metric", json_string("euclidean, standardised features"));
    json_object_set_new(obj, "seconds", json_real(console_now() - t0));
done:
    for (int r = 0; r < n_reps; r++)
        for (int t = 0; t < N_METHODS; t++)
            free(res[r].map[t]);
    return obj;
}
