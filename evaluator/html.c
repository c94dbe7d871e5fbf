/* evaluator/html: the report page (html.h). */
#include "evaluator/html.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errmsg/errmsg.h"
#include "evaluator/evaluate.h"
#include "evaluator/webtext.h"
#include "nn/ckpt.h"

#define PATH_LEN         4200
#define LINE_MAX_LEN     (1 << 20)
#define IMAGE_MAX_BYTES  (64L << 20)     /* larger PNGs are named, not embedded */
#define LOSS_MAX_POINTS  2000            /* the loss curve keeps every k-th step beyond this */
#define CHART_W          760
#define CHART_H          300
#define CHART_LEFT       64              /* room for the y tick labels */
#define CHART_RIGHT      16
#define CHART_TOP        12
#define CHART_BOTTOM     44              /* x tick labels and the axis title */
#define CHART_TICKS      6               /* about this many ticks per axis */
#define CKPT_SUFFIX      ".safetensors"
#define STATE_SUFFIX     ".json"         /* the trainer's state beside a checkpoint */
#define MAX_FRACTIONS    16

static const char *const palette[] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                       "#ff7f0e", "#17becf", "#8c564b", "#7f7f7f" };
#define PALETTE_N (sizeof palette / sizeof palette[0])

static const char page_css[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;background:#fff;"
    "max-width:1100px;margin:0 auto;padding:0 18px 40px}\n"
    "h1{font-size:1.5em;margin:18px 0 4px}h2{font-size:1.2em;margin:28px 0 8px;"
    "border-bottom:1px solid #ddd;padding-bottom:3px}\n"
    "nav a{margin-right:12px}p.sub{color:#555;margin:0 0 8px}\n"
    "table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}\n"
    "th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}\n"
    "th{background:#f4f4f4}td.t,th.t{text-align:left}tr.group th{text-align:left;background:#e9eef5}\n"
    "td.path{text-align:left;word-break:break-all;max-width:640px}\n"
    ".scroll{overflow-x:auto}svg.chart{max-width:100%;height:auto;background:#fcfcfc;border:1px solid #eee}\n"
    "svg text{font:11px system-ui,sans-serif;fill:#444}\n"
    "ul.legend{list-style:none;padding:0;margin:2px 0 10px}ul.legend li{display:inline-block;margin-right:16px}\n"
    "ul.legend span{display:inline-block;width:22px;margin-right:5px;vertical-align:middle;border-top:3px solid}\n"
    "ul.legend span.dash{border-top-style:dashed}\n"
    "figure{margin:8px 0 16px}figure img{max-width:100%;height:auto;image-rendering:auto;border:1px solid #eee}\n"
    "figcaption{color:#555;font-size:.92em}.note{color:#666;font-style:italic}\n"
    ".broken{color:#b00020;font-weight:bold}details pre{background:#f6f6f6;padding:8px;overflow-x:auto}\n";

/* Marks, on the page, every image that did not decode and every script
 * error; the counts go to data-images-ok, data-images-broken and data-errors
 * of <body>. */
static const char page_script[] =
    "(function(){\n"
    "var errors=0;\n"
    "function say(cls,text,where){var p=document.createElement('p');p.className=cls;p.textContent=text;"
    "(where||document.body).appendChild(p);}\n"
    "window.addEventListener('error',function(e){if(!(e instanceof ErrorEvent))return;\n"
    "errors++;document.body.setAttribute('data-errors',errors);say('broken','Script error: '+e.message);});\n"
    "window.addEventListener('load',function(){var ok=0,bad=0;\n"
    "Array.prototype.forEach.call(document.images,function(im){\n"
    "if(im.complete&&im.naturalWidth>0){ok++;return;}\n"
    "bad++;say('broken','This image could not be decoded: '+(im.getAttribute('alt')||''),im.parentNode);});\n"
    "document.body.setAttribute('data-images-ok',ok);document.body.setAttribute('data-images-broken',bad);\n"
    "document.body.setAttribute('data-errors',errors);});\n"
    "})();\n";

/* ------------------------------------------------------------ reading */

/* The JSON objects of a JSON-lines file, in file order; NULL when it cannot
 * be opened. Lines that do not parse are skipped. */
static json_t *read_jsonl(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    json_t *all = json_array();
    char *line = malloc(LINE_MAX_LEN);
    while (line && fgets(line, LINE_MAX_LEN, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (json_is_object(j))
            json_array_append(all, j);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return all;
}

/* A number of j by a dotted path ("baselines.raw_pixels.probe.top1"), or NAN. */
static double num_at(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save))
        j = json_object_get(j, tok);
    return json_is_number(j) ? json_number_value(j) : NAN;
}

static const char *str_at(const json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* <dir>/<name> when it exists, else <alt>/<name> when alt is given and it
 * exists there; 0, or -1 (path holds the first candidate). */
static int find_file(char *path, size_t len, const char *dir, const char *alt, const char *name)
{
    snprintf(path, len, "%s/%s", dir, name);
    if (access(path, R_OK) == 0)
        return 0;
    if (alt) {
        char other[PATH_LEN];
        snprintf(other, sizeof other, "%s/%s", alt, name);
        if (access(other, R_OK) == 0) {
            snprintf(path, len, "%s", other);
            return 0;
        }
    }
    return -1;
}

/* The evaluation records in step order (equal steps in file order). */
static json_t *sort_by_step(json_t *records)
{
    size_t n = json_array_size(records);
    json_t *sorted = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(records, i);
        if (!json_is_number(json_object_get(r, "step")))
            continue;
        size_t at = json_array_size(sorted);
        while (at > 0 && num_at(json_array_get(sorted, at - 1), "step") > num_at(r, "step"))
            at--;
        json_array_insert(sorted, at, r);
    }
    return sorted;
}

typedef struct {
    double *step, *loss;        /* (n) */
    size_t n;
    json_t *header;             /* a record of metrics.jsonl that is not a step, or NULL */
} loss_curve;

static void loss_curve_clear(loss_curve *c)
{
    free(c->step);
    free(c->loss);
    json_decref(c->header);
    memset(c, 0, sizeof *c);
}

static int loss_curve_read(loss_curve *c, const char *path)
{
    memset(c, 0, sizeof *c);
    json_t *all = read_jsonl(path);
    if (!all)
        return -1;
    size_t n = json_array_size(all), i;
    c->step = malloc((n ? n : 1) * sizeof *c->step);
    c->loss = malloc((n ? n : 1) * sizeof *c->loss);
    if (!c->step || !c->loss) {
        json_decref(all);
        loss_curve_clear(c);
        return -1;
    }
    json_t *r;
    json_array_foreach(all, i, r) {
        double step = num_at(r, "step"), loss = num_at(r, "loss");
        if (isfinite(step) && isfinite(loss) && !json_object_get(r, "end")) {
            c->step[c->n] = step;
            c->loss[c->n++] = loss;
        } else if (!c->header && !json_object_get(r, "loss") && !json_object_get(r, "end") &&
                   !(json_is_string(json_object_get(r, "record")) && !strcmp(str_at(r, "record"), "epoch"))) {
            c->header = json_incref(r);
        }
    }
    json_decref(all);
    return 0;
}

/* ------------------------------------------------------------ writing */

static void text(FILE *f, const char *s)
{
    eval_html_escape(f, s);
}

/* A scalar JSON value as text (strings escaped); 0 when it is not a scalar. */
static int put_scalar(FILE *f, const json_t *v)
{
    if (json_is_string(v))
        text(f, json_string_value(v));
    else if (json_is_integer(v))
        fprintf(f, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        fprintf(f, "%.6g", json_real_value(v));
    else if (json_is_boolean(v))
        fputs(json_is_true(v) ? "yes" : "no", f);
    else
        return 0;
    return 1;
}

typedef enum { CELL_PCT, CELL_NUM3, CELL_G, CELL_INT, CELL_SEC } cell_kind;

/* A table cell of a number: its exact value in data-v, the record field in data-k. */
static void num_cell(FILE *f, const char *key, double v, cell_kind kind)
{
    fputs("<td data-k=\"", f);
    text(f, key);
    fputs("\"", f);
    if (!isfinite(v)) {
        fputs(">&ndash;</td>", f);
        return;
    }
    fprintf(f, " data-v=\"%.17g\">", v);
    switch (kind) {
    case CELL_PCT: fprintf(f, "%.2f%%", 100.0 * v); break;
    case CELL_NUM3: fprintf(f, "%.3f", v); break;
    case CELL_G: fprintf(f, "%g", v); break;
    case CELL_INT: fprintf(f, "%.0f", v); break;
    case CELL_SEC: fprintf(f, "%.1f", v); break;
    }
    fputs("</td>", f);
}

/* Embeds the PNG at path as a data: URI in an <img>; a note instead when it
 * cannot be read. */
static void put_png(FILE *f, const char *id, const char *path, const char *alt)
{
    FILE *in = fopen(path, "rb");
    uint8_t *bytes = NULL;
    char *b64 = NULL;
    long size = -1;
    const char *why = NULL;
    if (!in)
        why = strerror(errno);
    else if (fseek(in, 0, SEEK_END) || (size = ftell(in)) < 0 || fseek(in, 0, SEEK_SET))
        why = "cannot find its size";
    else if (size > IMAGE_MAX_BYTES)
        why = "too large to embed";
    else if (!(bytes = malloc(size ? (size_t)size : 1)) || !(b64 = malloc(eval_base64_len((size_t)size) + 1)))
        why = "out of memory";
    else if (fread(bytes, 1, (size_t)size, in) != (size_t)size)
        why = "read error";
    if (in)
        fclose(in);
    if (why) {
        fputs("<p class=\"note\">Image not included: ", f);
        text(f, path);
        fputs(" (", f);
        text(f, why);
        fputs(").</p>\n", f);
    } else {
        eval_base64_encode(b64, bytes, (size_t)size);
        fprintf(f, "<img id=\"%s\" alt=\"", id);
        text(f, alt);
        fputs("\" data-file=\"", f);
        text(f, path);
        fputs("\" src=\"data:image/png;base64,", f);
        fputs(b64, f);
        fputs("\">\n", f);
    }
    free(bytes);
    free(b64);
}

/* ---- charts */

typedef struct {
    const char *label;
    const double *x, *y;        /* (n); a NAN y leaves a gap */
    size_t n;
    int colour;                 /* palette index */
    int hline;                  /* a reference: y[0] across the whole width, dashed */
} chart_series;

typedef struct {
    double x0, x1, y0, y1;
} chart_box;

/* A round tick spacing: 1, 2 or 5 times a power of ten, about range / CHART_TICKS. */
static double tick_step(double range)
{
    double raw = range / CHART_TICKS, mag = pow(10.0, floor(log10(raw)));
    double m = raw / mag;
    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * mag;
}

static double px(const chart_box *b, double x)
{
    return CHART_LEFT + (x - b->x0) / (b->x1 - b->x0) * (CHART_W - CHART_LEFT - CHART_RIGHT);
}

static double py(const chart_box *b, double y)
{
    return CHART_H - CHART_BOTTOM - (y - b->y0) / (b->y1 - b->y0) * (CHART_H - CHART_TOP - CHART_BOTTOM);
}

static void put_tick_label(FILE *f, double v, int percent)
{
    if (percent)
        fprintf(f, "%g%%", round(v * 1e4) / 1e2);
    else
        fprintf(f, "%g", fabs(v) < 1e-12 ? 0.0 : v);
}

/* An inline SVG line chart of the series and its legend. percent: y values
 * are fractions shown as percentages. */
static void svg_chart(FILE *f, const char *id, const char *title, const char *xlabel, const char *ylabel,
                      int percent, const chart_series *s, int ns)
{
    chart_box b = { INFINITY, -INFINITY, INFINITY, -INFINITY };
    size_t points = 0;
    for (int k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i]))
                continue;
            if (!s[k].hline) {
                b.x0 = fmin(b.x0, s[k].x[i]);
                b.x1 = fmax(b.x1, s[k].x[i]);
                points++;
            }
            b.y0 = fmin(b.y0, s[k].y[i]);
            b.y1 = fmax(b.y1, s[k].y[i]);
        }
    if (!points) {
        fputs("<p class=\"note\">Nothing to draw yet.</p>\n", f);
        return;
    }
    if (b.x1 - b.x0 < 1e-9) {
        b.x0 -= 1.0;
        b.x1 += 1.0;
    }
    double pad = (b.y1 - b.y0) * 0.06;
    if (pad < 1e-9)
        pad = percent ? 0.01 : fmax(fabs(b.y0) * 0.05, 0.01);
    b.y0 -= pad;
    b.y1 += pad;
    fprintf(f, "<svg class=\"chart\" id=\"%s\" data-points=\"%zu\" xmlns=\"http://www.w3.org/2000/svg\" "
               "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\"><title>", id, points, CHART_W,
            CHART_H, CHART_W, CHART_H);
    text(f, title);
    fputs("</title>\n", f);
    /* grid and ticks */
    double ys = tick_step(b.y1 - b.y0), xs = fmax(tick_step(b.x1 - b.x0), 1.0);   /* steps are whole */
    for (double v = ceil(b.y0 / ys) * ys; v <= b.y1; v += ys) {
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>", CHART_LEFT,
                CHART_W - CHART_RIGHT, py(&b, v), py(&b, v));
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", CHART_LEFT - 5, py(&b, v) + 4);
        put_tick_label(f, v, percent);
        fputs("</text>\n", f);
    }
    for (double v = ceil(b.x0 / xs) * xs; v <= b.x1; v += xs) {
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#e3e3e3\"/>", px(&b, v), px(&b, v),
                CHART_TOP, CHART_H - CHART_BOTTOM);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", px(&b, v), CHART_H - CHART_BOTTOM + 15);
        put_tick_label(f, v, 0);
        fputs("</text>\n", f);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", CHART_LEFT,
            CHART_TOP, CHART_W - CHART_LEFT - CHART_RIGHT, CHART_H - CHART_TOP - CHART_BOTTOM);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (CHART_W + CHART_LEFT) / 2, CHART_H - 6);
    text(f, xlabel);
    fprintf(f, "</text><text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">",
            (CHART_H - CHART_BOTTOM + CHART_TOP) / 2);
    text(f, ylabel);
    fputs("</text>\n", f);
    /* the series */
    for (int k = 0; k < ns; k++) {
        const char *colour = palette[s[k].colour % PALETTE_N];
        if (s[k].hline) {
            if (s[k].n && isfinite(s[k].y[0]))
                fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\" "
                           "stroke-dasharray=\"6 4\"/>\n", CHART_LEFT, CHART_W - CHART_RIGHT, py(&b, s[k].y[0]),
                        py(&b, s[k].y[0]), colour);
            continue;
        }
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" d=\"", colour);
        int pen = 0;
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) {
                pen = 0;
                continue;
            }
            fprintf(f, "%c%.1f %.1f", pen ? 'L' : 'M', px(&b, s[k].x[i]), py(&b, s[k].y[i]));
            pen = 1;
        }
        fputs("\"/>\n", f);
        if (s[k].n > 60)
            continue;            /* markers only where they can be told apart */
        for (size_t i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i])) {
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", px(&b, s[k].x[i]),
                        py(&b, s[k].y[i]), colour);
                text(f, s[k].label);
                if (percent)
                    fprintf(f, ", step %g: %.2f%%</title></circle>", s[k].x[i], 100.0 * s[k].y[i]);
                else
                    fprintf(f, ", step %g: %.4g</title></circle>", s[k].x[i], s[k].y[i]);
            }
        fputs("\n", f);
    }
    fputs("</svg>\n<ul class=\"legend\">", f);
    for (int k = 0; k < ns; k++) {
        if (!s[k].n || (s[k].hline && !isfinite(s[k].y[0])))
            continue;
        fprintf(f, "<li><span%s style=\"border-color:%s\"></span>", s[k].hline ? " class=\"dash\"" : "",
                palette[s[k].colour % PALETTE_N]);
        text(f, s[k].label);
        if (s[k].hline && percent)
            fprintf(f, " %.2f%%", 100.0 * s[k].y[0]);
        fputs("</li>", f);
    }
    fputs("</ul>\n", f);
}

/* ---- sections */

typedef struct {
    FILE *f;
    const char *out_dir, *run_dir;
    json_t *evals;              /* records in step order */
    const json_t *last;         /* the newest checkpoint's record */
    loss_curve loss;
    double fractions[MAX_FRACTIONS];
    int n_fractions;
} page;

static void group_row(FILE *f, const char *title, const char *path)
{
    fputs("<tr class=\"group\"><th colspan=\"2\">", f);
    text(f, title);
    if (path) {
        fputs(" <span class=\"note\">(", f);
        text(f, path);
        fputs(")</span>", f);
    }
    fputs("</th></tr>\n", f);
}

static void setting_row(FILE *f, const char *source, const char *key, const json_t *v)
{
    fprintf(f, "<tr data-src=\"%s\" data-k=\"", source);
    text(f, key);
    fputs("\"><th class=\"t\">", f);
    text(f, key);
    fputs("</th><td class=\"path\">", f);
    put_scalar(f, v);
    fputs("</td></tr>\n", f);
}

/* Every scalar field of obj but the format tags. */
static void setting_rows(FILE *f, const char *source, const json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (!strcmp(key, "format") || !strcmp(key, "version") || !strcmp(key, "fmt") || !strcmp(key, "ver") ||
            json_is_object(v) || json_is_array(v) || json_is_null(v) ||
            (json_is_string(v) && !json_string_length(v)))
            continue;
        setting_row(f, source, key, v);
    }
}

/* The trainer's state file of a checkpoint: <path minus .safetensors>.json. */
static json_t *trainer_state(const char *ckpt, char *state, size_t len)
{
    size_t n = strlen(ckpt), sl = strlen(CKPT_SUFFIX);
    if (n <= sl || strcmp(ckpt + n - sl, CKPT_SUFFIX))
        return NULL;
    snprintf(state, len, "%.*s%s", (int)(n - sl), ckpt, STATE_SUFFIX);
    return json_load_file(state, 0, NULL);
}

static void section_settings(page *p)
{
    FILE *f = p->f;
    char path[PATH_LEN], state_path[PATH_LEN];
    fputs("<h2 id=\"settings\">Settings</h2>\n<table id=\"settings-table\">\n", f);
    if (find_file(path, sizeof path, p->run_dir, p->out_dir, EVAL_RUN_SETTINGS) == 0) {
        json_t *run = json_load_file(path, 0, NULL);
        if (json_is_object(run)) {
            group_row(f, "run.sh", path);
            setting_rows(f, "run", run);
        }
        json_decref(run);
    }
    if (p->loss.header) {
        group_row(f, "training metrics header", NULL);
        setting_rows(f, "metrics", p->loss.header);
    }
    /* the trainer's state beside the newest checkpoint, or beside <run>/latest */
    const char *ckpt = str_at(p->last, "checkpoint");
    json_t *state = ckpt ? trainer_state(ckpt, state_path, sizeof state_path) : NULL;
    if (!state) {
        char latest[PATH_LEN], *real;
        snprintf(latest, sizeof latest, "%s/latest", p->run_dir);
        if ((real = realpath(latest, NULL))) {
            state = trainer_state(real, state_path, sizeof state_path);
            free(real);
        }
    }
    if (json_is_object(state)) {
        static const char *const keys[] = { "method", "arch", "width", "batch", "epochs", "minutes", "optimizer",
                                            "lr", "weight_decay", "momentum", "tau", "warmup_steps", "total_steps",
                                            "dataset_size", "images_seen", "seed", "step", "train_seconds" };
        group_row(f, "trainer", state_path);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const json_t *v = json_object_get(state, keys[i]);
            if (v && !json_is_object(v) && !json_is_array(v))
                setting_row(f, "trainer", keys[i], v);
        }
    }
    json_decref(state);
    nn_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    char nerr[512];
    int have_meta = ckpt && nn_ckpt_read_meta(ckpt, &meta, nerr, sizeof nerr) == 0;
    group_row(f, "evaluation", NULL);
    static const char *const ev_keys[] = { "checkpoint", "method", "step", "epoch", "train_data", "n_train",
                                           "test_data", "n_test" };
    for (size_t i = 0; i < sizeof ev_keys / sizeof ev_keys[0]; i++)
        if (json_object_get(p->last, ev_keys[i]))
            setting_row(f, "eval", ev_keys[i], json_object_get(p->last, ev_keys[i]));
    const json_t *enc = json_object_get(p->last, "encoder");
    if (json_object_get(enc, "readout"))
        setting_row(f, "eval", "readout", json_object_get(enc, "readout"));
    if (json_object_get(enc, "views"))
        setting_row(f, "eval", "views", json_object_get(enc, "views"));
    if (json_object_get(enc, "feat_dim"))
        setting_row(f, "eval", "features", json_object_get(enc, "feat_dim"));
    fputs("</table>\n", f);
    if (have_meta && meta.desc) {
        fputs("<details><summary>Network description of the checkpoint</summary><pre id=\"net-desc\">", f);
        text(f, meta.desc);
        fputs("</pre></details>\n", f);
    }
    nn_ckpt_meta_clear(&meta);
}

static void section_loss(page *p)
{
    FILE *f = p->f;
    fputs("<h2 id=\"loss\">Training loss</h2>\n", f);
    if (!p->loss.n) {
        fputs("<p class=\"note\" id=\"loss-none\">No training loss: no metrics.jsonl in the run folder.</p>\n", f);
        return;
    }
    /* at most about LOSS_MAX_POINTS points, the last step always in */
    size_t every = (p->loss.n + LOSS_MAX_POINTS - 1) / LOSS_MAX_POINTS, n = 0;
    double *x = malloc(p->loss.n * sizeof *x), *y = malloc(p->loss.n * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return;
    }
    for (size_t i = 0; i < p->loss.n; i++)
        if (i % every == 0 || i + 1 == p->loss.n) {
            x[n] = p->loss.step[i];
            y[n++] = p->loss.loss[i];
        }
    chart_series s = { "training loss", x, y, n, 0, 0 };
    svg_chart(f, "loss-chart", "Training loss against step", "step", "loss", 0, &s, 1);
    fprintf(f, "<p class=\"sub\">%zu steps: loss %.4f at step %g, %.4f at step %g%s.</p>\n", p->loss.n,
            p->loss.loss[0], p->loss.step[0], p->loss.loss[p->loss.n - 1], p->loss.step[p->loss.n - 1],
            every > 1 ? " (the chart shows every few steps)" : "");
    free(x);
    free(y);
}

/* The top-1 of fraction fr in a representation's label_fractions, or NAN. */
static double fraction_top1(const json_t *rep, double fr)
{
    const json_t *arr = json_object_get(rep, "label_fractions"), *e;
    size_t i;
    json_array_foreach(arr, i, e)
        if (fabs(num_at(e, "fraction") - fr) < 1e-12)
            return num_at(e, "top1");
    return NAN;
}

static void fraction_label(char *buf, size_t len, double fr)
{
    snprintf(buf, len, "%g%% labels", 100.0 * fr);
}

static void section_accuracy(page *p)
{
    FILE *f = p->f;
    size_t n = json_array_size(p->evals);
    fputs("<h2 id=\"accuracy\">Accuracy per checkpoint</h2>\n", f);
    double *buf = malloc((n ? n : 1) * (3 + MAX_FRACTIONS) * sizeof *buf);
    if (!buf)
        return;
    double *x = buf, *probe = buf + n, *knn = buf + 2 * n, *frac = buf + 3 * n;
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(p->evals, i);
        x[i] = num_at(r, "step");
        probe[i] = num_at(r, "probe_top1");
        knn[i] = num_at(r, "knn_top1");
        for (int k = 0; k < p->n_fractions; k++)
            frac[k * n + i] = fraction_top1(json_object_get(r, "encoder"), p->fractions[k]);
    }
    chart_series s[4 + MAX_FRACTIONS];
    char labels[MAX_FRACTIONS][48];
    int ns = 0;
    s[ns++] = (chart_series){ "linear probe", x, probe, n, 0, 0 };
    s[ns++] = (chart_series){ "kNN", x, knn, n, 1, 0 };
    for (int k = 0; k < p->n_fractions; k++) {
        if (p->fractions[k] >= 1.0)
            continue;            /* 100% of the labels is the linear probe */
        fraction_label(labels[k], sizeof labels[k], p->fractions[k]);
        s[ns++] = (chart_series){ labels[k], x, frac + (size_t)k * n, n, 2 + k, 0 };
    }
    double raw = num_at(p->last, "baselines.raw_pixels.probe.top1");
    double rnd = num_at(p->last, "baselines.random_encoder.probe.top1");
    s[ns++] = (chart_series){ "probe, raw pixels", x, &raw, 1, 6, 1 };
    s[ns++] = (chart_series){ "probe, random encoder", x, &rnd, 1, 7, 1 };
    svg_chart(f, "accuracy-chart", "Test top-1 accuracy against step", "step", "test top-1", 1, s, ns);
    free(buf);

    fputs("<div class=\"scroll\"><table id=\"evals\">\n<tr><th>step</th><th>epoch</th><th>probe top-1</th>"
          "<th>probe top-5</th>", f);
    for (int k = 0; k < p->n_fractions; k++) {
        char l[48];
        fraction_label(l, sizeof l, p->fractions[k]);
        fprintf(f, "<th>%s</th>", l);
    }
    fputs("<th>kNN top-1</th><th>align</th><th>uniform</th><th>seconds</th></tr>\n", f);
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(p->evals, i);
        fprintf(f, "<tr data-step=\"%.0f\">", num_at(r, "step"));
        num_cell(f, "step", num_at(r, "step"), CELL_INT);
        num_cell(f, "epoch", num_at(r, "epoch"), CELL_G);
        num_cell(f, "probe_top1", num_at(r, "probe_top1"), CELL_PCT);
        num_cell(f, "probe_top5", num_at(r, "probe_top5"), CELL_PCT);
        for (int k = 0; k < p->n_fractions; k++) {
            char key[48];
            snprintf(key, sizeof key, "fraction:%g", p->fractions[k]);
            num_cell(f, key, fraction_top1(json_object_get(r, "encoder"), p->fractions[k]), CELL_PCT);
        }
        num_cell(f, "knn_top1", num_at(r, "knn_top1"), CELL_PCT);
        num_cell(f, "align", num_at(r, "align"), CELL_NUM3);
        num_cell(f, "uniform", num_at(r, "uniform"), CELL_NUM3);
        num_cell(f, "seconds", num_at(r, "seconds"), CELL_SEC);
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
}

static void section_latest(page *p)
{
    FILE *f = p->f;
    const json_t *last = p->last, *b = json_object_get(last, "baselines");
    fprintf(f, "<h2 id=\"latest\">Newest checkpoint against the baselines (step %.0f)</h2>\n", num_at(last, "step"));
    fputs("<div class=\"scroll\"><table id=\"latest-table\">\n<tr><th class=\"t\"></th><th>features</th>"
          "<th>probe top-1</th><th>probe top-5</th>", f);
    for (int k = 0; k < p->n_fractions; k++) {
        char l[48];
        fraction_label(l, sizeof l, p->fractions[k]);
        fprintf(f, "<th>%s</th>", l);
    }
    fputs("<th>kNN top-1</th><th>kNN top-5</th><th>align</th><th>uniform</th></tr>\n", f);
    static const char *const reps[][2] = { { "encoder", "encoder" }, { "random encoder", "random_encoder" },
                                           { "raw pixels", "raw_pixels" } };
    for (size_t r = 0; r < sizeof reps / sizeof reps[0]; r++) {
        const json_t *rep = r == 0 ? json_object_get(last, "encoder") : json_object_get(b, reps[r][1]);
        if (!json_is_object(rep))
            continue;
        fprintf(f, "<tr data-rep=\"%s\"><th class=\"t\">%s%s</th>", reps[r][1], reps[r][0],
                json_is_true(json_object_get(rep, "cached")) ? " <span class=\"note\">(cached)</span>" : "");
        num_cell(f, "feat_dim", num_at(rep, "feat_dim"), CELL_INT);
        num_cell(f, "probe.top1", num_at(rep, "probe.top1"), CELL_PCT);
        num_cell(f, "probe.top5", num_at(rep, "probe.top5"), CELL_PCT);
        for (int k = 0; k < p->n_fractions; k++) {
            char key[48];
            snprintf(key, sizeof key, "fraction:%g", p->fractions[k]);
            num_cell(f, key, fraction_top1(rep, p->fractions[k]), CELL_PCT);
        }
        num_cell(f, "knn.top1", num_at(rep, "knn.top1"), CELL_PCT);
        num_cell(f, "knn.top5", num_at(rep, "knn.top5"), CELL_PCT);
        num_cell(f, "align", num_at(rep, "align"), CELL_NUM3);
        num_cell(f, "uniform", num_at(rep, "uniform"), CELL_NUM3);
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
    const json_t *enc = json_object_get(last, "encoder");
    fprintf(f, "<p class=\"sub\">Linear probe: multinomial logistic regression on standardised features, "
               "L2 strength chosen on a validation split; few-label probes: the same on class-balanced subsets "
               "of the training labels; kNN: k %.0f, temperature %g, cosine similarity, weighted votes; "
               "alignment (alpha 2) and uniformity (t 2): lower is better.</p>\n",
            num_at(enc, "knn.k"), num_at(enc, "knn.t"));
    if (!json_is_object(b))
        fputs("<p class=\"note\">No baselines in this record (--no-baselines).</p>\n", f);
}

/* The fine-tuning table of the newest record that has one. */
static void section_finetune(page *p)
{
    FILE *f = p->f;
    const json_t *rec = NULL, *list = NULL;
    for (size_t i = json_array_size(p->evals); i-- > 0 && !rec;) {
        const json_t *l = json_object_get(json_array_get(p->evals, i), "finetune");
        if (json_is_array(l) && json_array_size(l)) {
            rec = json_array_get(p->evals, i);
            list = l;
        }
    }
    fputs("<h2 id=\"finetune\">Fine-tuning</h2>\n", f);
    if (!rec) {
        fputs("<p class=\"note\" id=\"finetune-none\">Fine-tuning: not run (no \"finetune\" list in "
              "eval.jsonl).</p>\n", f);
        return;
    }
    static const struct { const char *key, *title; cell_kind kind; } cols[] = {
        { "labels", "labels", CELL_INT }, { "scratch_top1", "from scratch top-1", CELL_PCT },
        { "probe_top1", "linear probe top-1", CELL_PCT }, { "finetune_top1", "fine-tuned top-1", CELL_PCT },
        { "epochs", "epochs", CELL_G }, { "lr", "learning rate", CELL_G },
        { "weight_decay", "weight decay", CELL_G }, { "seconds", "seconds", CELL_SEC },
    };
    fprintf(f, "<p class=\"sub\">Step %.0f, on labeled subsets of the training set: test top-1 of the same "
               "network trained from scratch, of the linear probe on the frozen encoder, and of the encoder "
               "fine-tuned.</p>\n", num_at(rec, "step"));
    fputs("<div class=\"scroll\"><table id=\"finetune-table\">\n<tr><th class=\"t\">subset</th>", f);
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        fprintf(f, "<th>%s</th>", cols[c].title);
    fputs("</tr>\n", f);
    size_t i;
    const json_t *row;
    json_array_foreach(list, i, row) {
        fprintf(f, "<tr data-i=\"%zu\"><td class=\"t\" data-k=\"subset\">", i);
        const json_t *sub = json_object_get(row, "subset");
        if (json_is_number(sub))
            fprintf(f, "%g%%", 100.0 * json_number_value(sub));
        else
            put_scalar(f, sub);
        fputs("</td>", f);
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
            num_cell(f, cols[c].key, num_at(row, cols[c].key), cols[c].kind);
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
}

static void section_classmap(page *p)
{
    FILE *f = p->f;
    const json_t *cm = json_object_get(p->last, "classmap");
    const char *png = str_at(p->last, "classmap_png");
    fputs("<h2 id=\"classmap\">Class map</h2>\n", f);
    if (!json_is_object(cm) && !png) {
        fputs("<p class=\"note\">No class map in the newest record (--classmap 0).</p>\n", f);
        return;
    }
    if (json_is_object(cm)) {
        fprintf(f, "<p class=\"sub\">%.0f test images; kNN purity (k %.0f) of the t-SNE and PCA maps: the share "
                   "of each point's neighbours in the map that have its class (chance about 0.1 with ten classes); "
                   "silhouette of the standardised features by class (Euclidean). Higher: classes kept "
                   "together.</p>\n", num_at(cm, "points"), num_at(cm, "k"));
        fputs("<table id=\"classmap-table\">\n<tr><th class=\"t\"></th><th>t-SNE purity</th><th>PCA purity</th>"
              "<th>silhouette</th></tr>\n", f);
        static const char *const reps[][2] = { { "encoder", "encoder" }, { "random encoder", "random_encoder" },
                                               { "raw pixels", "raw_pixels" } };
        for (size_t r = 0; r < sizeof reps / sizeof reps[0]; r++) {
            const json_t *rep = r == 0 ? cm : json_object_get(cm, reps[r][1]);
            if (!json_is_object(rep))
                continue;
            fprintf(f, "<tr data-rep=\"%s\"><th class=\"t\">%s</th>", reps[r][1], reps[r][0]);
            num_cell(f, "tsne_knn_purity", num_at(rep, "tsne_knn_purity"), CELL_NUM3);
            num_cell(f, "pca_knn_purity", num_at(rep, "pca_knn_purity"), CELL_NUM3);
            num_cell(f, "silhouette", num_at(rep, "silhouette"), CELL_NUM3);
            fputs("</tr>\n", f);
        }
        fputs("</table>\n", f);
    }
    if (png) {
        fputs("<figure>", f);
        put_png(f, "img-classmap", png, "class map: t-SNE and PCA of the test images by class");
        fputs("<figcaption>Rows t-SNE and PCA; columns the encoder, the random encoder and the raw pixels; one dot "
              "per image, coloured by class.</figcaption></figure>\n", f);
    }
}

static void section_attention(page *p)
{
    FILE *f = p->f;
    const char *png = str_at(p->last, "attention_png");
    fputs("<h2 id=\"attention\">Attention maps</h2>\n", f);
    if (!png) {
        fputs("<p class=\"note\">No attention maps in the newest record (--attention 0).</p>\n", f);
        return;
    }
    fputs("<figure>", f);
    put_png(f, "img-attention", png, "attention maps of the newest checkpoint");
    fputs("<figcaption>Test images, one per class in turn, and each convolutional stage's mean squared activation "
          "over channels, laid over the image in false colour.</figcaption></figure>\n", f);
}

static void section_preview(page *p)
{
    FILE *f = p->f;
    char path[PATH_LEN];
    fputs("<h2 id=\"augment\">Augmentations</h2>\n", f);
    if (find_file(path, sizeof path, p->run_dir, p->out_dir, EVAL_PREVIEW_FILE)) {
        fputs("<p class=\"note\" id=\"augment-none\">No augmentation preview in the run folder (run.sh writes "
              EVAL_PREVIEW_FILE " with <code>augmenter --preview</code>).</p>\n", f);
        return;
    }
    fputs("<figure>", f);
    put_png(f, "img-augment", path, "augmentation preview");
    fputs("<figcaption>One training image and what each augmentation does to it "
          "(<code>augmenter --preview</code>).</figcaption></figure>\n", f);
}

/* The label fractions of the newest record, in its order. */
static void collect_fractions(page *p)
{
    const json_t *arr = json_object_get(json_object_get(p->last, "encoder"), "label_fractions"), *e;
    size_t i;
    json_array_foreach(arr, i, e)
        if (p->n_fractions < MAX_FRACTIONS && isfinite(num_at(e, "fraction")))
            p->fractions[p->n_fractions++] = num_at(e, "fraction");
}

static void write_page(page *p)
{
    FILE *f = p->f;
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>", f);
    text(f, str_at(p->last, "method"));
    fprintf(f, " step %.0f: ", num_at(p->last, "step"));
    text(f, p->out_dir);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", page_css);
    text(f, str_at(p->last, "method"));
    fputs(" run <code>", f);
    text(f, p->out_dir);
    fputs("</code></h1>\n", f);
    fprintf(f, "<p class=\"sub\" id=\"headline\">Newest checkpoint: step %.0f, epoch %.0f; linear probe %.2f%%, "
               "kNN %.2f%%. %zu evaluation%s; page written %s.</p>\n",
            num_at(p->last, "step"), num_at(p->last, "epoch"), 100.0 * num_at(p->last, "probe_top1"),
            100.0 * num_at(p->last, "knn_top1"), json_array_size(p->evals),
            json_array_size(p->evals) == 1 ? "" : "s", when);
    fputs("<nav><a href=\"#settings\">settings</a><a href=\"#loss\">loss</a><a href=\"#accuracy\">accuracy</a>"
          "<a href=\"#latest\">baselines</a><a href=\"#finetune\">fine-tuning</a><a href=\"#classmap\">class map</a>"
          "<a href=\"#attention\">attention</a><a href=\"#augment\">augmentations</a></nav>\n", f);
    section_settings(p);
    section_loss(p);
    section_accuracy(p);
    section_latest(p);
    section_finetune(p);
    section_classmap(p);
    section_attention(p);
    section_preview(p);
    fprintf(f, "<script>\n%s</script>\n</body>\n</html>\n", page_script);
}

int eval_html_write(const char *out_dir, const char *run_dir, char *err, size_t errlen)
{
    char path[PATH_LEN], dir[PATH_LEN], tmp[PATH_LEN + 64], final[PATH_LEN + 64];
    page p;
    memset(&p, 0, sizeof p);
    p.out_dir = out_dir;
    p.run_dir = run_dir ? run_dir : out_dir;
    snprintf(path, sizeof path, "%s/%s", out_dir, EVAL_JSONL);
    json_t *records = read_jsonl(path);
    if (!records) {
        errmsg_set(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    p.evals = sort_by_step(records);
    json_decref(records);
    size_t n = json_array_size(p.evals);
    if (!n) {
        errmsg_set(err, errlen, "%s has no evaluation yet", path);
        json_decref(p.evals);
        return -1;
    }
    p.last = json_array_get(p.evals, n - 1);
    collect_fractions(&p);
    char metrics[PATH_LEN];
    if (find_file(metrics, sizeof metrics, p.run_dir, out_dir, "metrics.jsonl") == 0)
        loss_curve_read(&p.loss, metrics);

    snprintf(dir, sizeof dir, "%s/%s", out_dir, EVAL_REPORT_DIR);
    int rc = -1;
    if (eval_mkdir_p(dir, err, errlen))
        goto done;
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%ld", dir, EVAL_HTML_FILE, (long)getpid());
    snprintf(final, sizeof final, "%s/%s", dir, EVAL_HTML_FILE);
    if (!(p.f = fopen(tmp, "w"))) {
        errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    write_page(&p);
    int bad = ferror(p.f);
    if (fclose(p.f) || bad) {
        errmsg_set(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, final)) {
        errmsg_set(err, errlen, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        unlink(tmp);
        goto done;
    }
    rc = 0;
done:
    loss_curve_clear(&p.loss);
    json_decref(p.evals);
    return rc;
}
