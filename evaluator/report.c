/* evaluator/report: plots and summary of the evaluations (report.h). */
#include "evaluator/report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "console/console.h"
#include "errmsg/errmsg.h"
#include "evaluator/evaluate.h"
#include "evaluator/html.h"

#define GNUPLOT      "gnuplot"
#define GNUPLOT_LOG  "gnuplot.log"
#define PATH_MAX_LEN 4200
#define LINE_MAX_LEN (1 << 20)
#define PLOT_SIZE    "900,540"

/* A number of a JSON object found by a dotted path ("baselines.raw_pixels.probe.top1"), or NAN. */
static double get_num(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && j; tok = strtok(NULL, "."))
        j = json_object_get(j, tok);
    return json_is_number(j) ? json_number_value(j) : NAN;
}

static void put_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, " %.6g", v);
    else
        fprintf(f, " ?");
}

/* Calls fn on every JSON object line of path; returns the lines read, -1 when
 * the file cannot be opened. */
static long each_line(const char *path, void (*fn)(json_t *, void *), void *ctx)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *line = malloc(LINE_MAX_LEN);
    long n = 0;
    while (line && fgets(line, LINE_MAX_LEN, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (json_is_object(j)) {
            fn(j, ctx);
            n++;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return n;
}

typedef struct {
    FILE *out;
    json_t *last;
    double first_loss, last_loss;
    long first_step, last_step;
} scan;

static void eval_line(json_t *j, void *ctx)
{
    scan *s = ctx;
    if (!json_is_number(json_object_get(j, "step")))
        return;
    fprintf(s->out, "%lld", (long long)json_integer_value(json_object_get(j, "step")));
    put_num(s->out, get_num(j, "probe_top1"));
    put_num(s->out, get_num(j, "knn_top1"));
    put_num(s->out, get_num(j, "baselines.raw_pixels.probe.top1"));
    put_num(s->out, get_num(j, "baselines.random_encoder.probe.top1"));
    put_num(s->out, get_num(j, "baselines.raw_pixels.knn.top1"));
    put_num(s->out, get_num(j, "baselines.random_encoder.knn.top1"));
    fprintf(s->out, "\n");
    /* The summary describes the newest checkpoint, whatever order they were
     * evaluated in (several waiting at a stop are not in step order). */
    if (!s->last || get_num(j, "step") >= get_num(s->last, "step")) {
        json_decref(s->last);
        s->last = json_incref(j);
    }
}

static void metrics_line(json_t *j, void *ctx)
{
    scan *s = ctx;
    double step = get_num(j, "step"), loss = get_num(j, "loss");
    if (!isfinite(step) || !isfinite(loss) || json_object_get(j, "end"))
        return;
    fprintf(s->out, "%ld %.6g\n", (long)step, loss);
    if (s->first_step < 0) {
        s->first_step = (long)step;
        s->first_loss = loss;
    }
    s->last_step = (long)step;
    s->last_loss = loss;
}

/* 1 when gnuplot is on PATH. */
static int have_gnuplot(void)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX_LEN], file[PATH_MAX_LEN + 16];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *dir = strtok(buf, ":"); dir; dir = strtok(NULL, ":")) {
        snprintf(file, sizeof file, "%s/%s", dir, GNUPLOT);
        if (access(file, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* Runs gnuplot on script in dir; 0, or -1 with err. */
static int run_gnuplot(const char *dir, const char *script, char *err, size_t errlen)
{
    pid_t pid = fork();
    if (pid < 0) {
        errmsg_set(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* gnuplot's warnings (a series without points yet) go to a log beside the plots */
        FILE *log = chdir(dir) == 0 ? freopen(GNUPLOT_LOG, "w", stderr) : NULL;
        if (log)
            execlp(GNUPLOT, GNUPLOT, script, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        errmsg_set(err, errlen, "gnuplot %s/%s failed (status %d; see %s/%s)", dir, script, status, dir, GNUPLOT_LOG);
        return -1;
    }
    return 0;
}

static void pct(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, " %9.2f%%", 100.0 * v);
    else
        fprintf(f, " %10s", "-");
}

static void num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, " %9.3f", v);
    else
        fprintf(f, " %9s", "-");
}

/* The label fraction f's probe top-1 of a representation, or NAN. */
static double fraction_top1(const json_t *rep, double f)
{
    const json_t *arr = json_object_get(rep, "label_fractions"), *p;
    size_t i;
    json_array_foreach(arr, i, p)
        if (fabs(get_num(p, "fraction") - f) < 1e-12)
            return get_num(p, "top1");
    return NAN;
}

static void summary_row(FILE *f, const char *name, const json_t *rep, const json_t *fracs)
{
    fprintf(f, "%-16s", name);
    pct(f, get_num(rep, "probe.top1"));
    pct(f, get_num(rep, "probe.top5"));
    pct(f, get_num(rep, "knn.top1"));
    num(f, get_num(rep, "align"));
    num(f, get_num(rep, "uniform"));
    const json_t *p;
    size_t i;
    json_array_foreach(fracs, i, p)
        pct(f, fraction_top1(rep, get_num(p, "fraction")));
    fprintf(f, "\n");
}

static int write_summary(const char *path, const json_t *last, const scan *loss, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        errmsg_set(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    const json_t *enc = json_object_get(last, "encoder");
    const json_t *fracs = json_object_get(enc, "label_fractions");
    fprintf(f, "Evaluation of %s\n", json_string_value(json_object_get(last, "checkpoint")));
    fprintf(f, "method %s, step %.0f, epoch %.0f, %.0f features\n",
            json_string_value(json_object_get(last, "method")), get_num(last, "step"), get_num(last, "epoch"),
            get_num(enc, "feat_dim"));
    fprintf(f, "train: %s (%.0f images); test: %s (%.0f images)\n\n",
            json_string_value(json_object_get(last, "train_data")), get_num(last, "n_train"),
            json_string_value(json_object_get(last, "test_data")), get_num(last, "n_test"));
    fprintf(f, "%-16s %10s %10s %10s %9s %9s", "", "probe@1", "probe@5", "kNN@1", "align", "uniform");
    const json_t *p;
    size_t i;
    json_array_foreach(fracs, i, p) {
        char h[32];
        snprintf(h, sizeof h, "%g%% lab", 100.0 * get_num(p, "fraction"));
        fprintf(f, " %10s", h);
    }
    fprintf(f, "\n");
    summary_row(f, "encoder", enc, fracs);
    const json_t *b = json_object_get(last, "baselines");
    if (json_object_get(b, "random_encoder"))
        summary_row(f, "random encoder", json_object_get(b, "random_encoder"), fracs);
    if (json_object_get(b, "raw_pixels"))
        summary_row(f, "raw pixels", json_object_get(b, "raw_pixels"), fracs);
    fprintf(f, "\nprobe: multinomial logistic regression on standardised features, L2 chosen on a validation\n"
               "split; kNN: k %.0f, T %g, cosine, weighted; align (alpha 2) and uniform (t 2): lower is better.\n",
            get_num(enc, "knn.k"), get_num(enc, "knn.t"));
    if (loss->first_step >= 0)
        fprintf(f, "training loss: %.4f at step %ld -> %.4f at step %ld\n", loss->first_loss, loss->first_step,
                loss->last_loss, loss->last_step);
    if (json_is_string(json_object_get(last, "attention_png")))
        fprintf(f, "attention maps: %s\n", json_string_value(json_object_get(last, "attention_png")));
    const json_t *cm = json_object_get(last, "classmap");
    if (json_is_object(cm)) {
        fprintf(f, "\nclass map of %.0f test images: kNN purity (k %.0f) of the t-SNE and PCA maps, silhouette of\n"
                   "the features by class (Euclidean, standardised features); higher: classes kept together\n",
                get_num(cm, "points"), get_num(cm, "k"));
        fprintf(f, "%-16s %9s %9s %9s\n", "", "t-SNE", "PCA", "silh.");
        static const char *rows[][2] = { { "encoder", NULL }, { "random encoder", "random_encoder" },
                                         { "raw pixels", "raw_pixels" } };
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            const json_t *rep = rows[r][1] ? json_object_get(cm, rows[r][1]) : cm;
            if (!json_is_object(rep))
                continue;
            fprintf(f, "%-16s", rows[r][0]);
            num(f, get_num(rep, "tsne_knn_purity"));
            num(f, get_num(rep, "pca_knn_purity"));
            num(f, get_num(rep, "silhouette"));
            fprintf(f, "\n");
        }
        if (json_is_string(json_object_get(last, "classmap_png")))
            fprintf(f, "class map: %s\n", json_string_value(json_object_get(last, "classmap_png")));
    }
    if (fclose(f)) {
        errmsg_set(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static const char loss_script[] =
    "set output 'loss.png'\n"
    "set title 'Training loss'\n"
    "set key top right\n"
    "set ylabel 'loss'\n"
    "unset offsets\n"
    "set format y '%g'\n"
    "plot 'loss.dat' using 1:2 with lines title 'loss'\n";

/* The gnuplot script: accuracy against step, the baselines of the latest
 * evaluation as horizontal lines (they do not depend on the step). */
static void write_plot_script(FILE *gp, const json_t *last, int have_loss)
{
    fprintf(gp, "# Drawn by the evaluator; run `gnuplot plots.gp` in this folder to redraw.\n"
                "set terminal pngcairo size " PLOT_SIZE " noenhanced\n"
                "set datafile missing '?'\n"
                "set grid\n"
                "set key bottom right\n"
                "set xlabel 'step'\n"
                "set ylabel 'test top-1 accuracy'\n"
                "set format y '%%.0f%%%%'\n"
                "set offsets graph 0.02, graph 0.02, graph 0.05, graph 0.05\n"
                "set output 'accuracy.png'\n"
                "set title 'Linear probe and kNN against training step'\n"
                "plot 'accuracy.dat' using 1:($2*100) with linespoints lw 2 pt 7 title 'linear probe', \\\n"
                "     '' using 1:($3*100) with linespoints lw 2 pt 5 title 'kNN (k %.0f, T %g)'",
            get_num(last, "encoder.knn.k"), get_num(last, "encoder.knn.t"));
    static const struct { const char *path, *title; int dash; } base[] = {
        { "baselines.random_encoder.probe.top1", "probe: random encoder", 2 },
        { "baselines.raw_pixels.probe.top1", "probe: raw pixels", 3 },
        { "baselines.random_encoder.knn.top1", "kNN: random encoder", 4 },
        { "baselines.raw_pixels.knn.top1", "kNN: raw pixels", 5 },
    };
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
        double v = get_num(last, base[i].path);
        if (isfinite(v))
            fprintf(gp, ", \\\n     %.4f with lines dt %d lw 1.5 title '%s %.2f%%'", 100.0 * v, base[i].dash,
                    base[i].title, 100.0 * v);
    }
    fprintf(gp, "\n");
    if (have_loss)
        fputs(loss_script, gp);
}

int eval_report_update(const char *out_dir, const char *run_dir, char *err, size_t errlen)
{
    static int warned;
    char dir[PATH_MAX_LEN], path[PATH_MAX_LEN + 64];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, EVAL_REPORT_DIR);
    if (mkdir(dir, 0777) && errno != EEXIST) {
        errmsg_set(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    scan s = { NULL, NULL, 0, 0, -1, -1 };
    snprintf(path, sizeof path, "%s/accuracy.dat", dir);
    if (!(s.out = fopen(path, "w"))) {
        errmsg_set(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(s.out, "# step probe_top1 knn_top1 raw_probe_top1 random_probe_top1 raw_knn_top1 random_knn_top1\n");
    snprintf(path, sizeof path, "%s/%s", out_dir, EVAL_JSONL);
    each_line(path, eval_line, &s);
    fclose(s.out);
    if (!s.last) {
        errmsg_set(err, errlen, "%s has no evaluation yet", path);
        return -1;
    }
    /* the trainer's metrics: beside the checkpoints, or in the output folder */
    int have_loss = 0;
    snprintf(path, sizeof path, "%s/loss.dat", dir);
    if ((s.out = fopen(path, "w"))) {
        char metrics[PATH_MAX_LEN + 32];
        snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run_dir ? run_dir : out_dir);
        if (each_line(metrics, metrics_line, &s) < 0 && run_dir) {
            snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", out_dir);
            each_line(metrics, metrics_line, &s);
        }
        fclose(s.out);
        have_loss = s.first_step >= 0;
    }
    snprintf(path, sizeof path, "%s/plots.gp", dir);
    FILE *gp = fopen(path, "w");
    if (gp) {
        write_plot_script(gp, s.last, have_loss);
        fclose(gp);
    }
    snprintf(path, sizeof path, "%s/summary.txt", dir);
    int rc = write_summary(path, s.last, &s, err, errlen);
    json_decref(s.last);
    if (rc)
        return -1;
    char herr[1024];
    if (eval_html_write(out_dir, run_dir, herr, sizeof herr))
        console_log("report page not updated: %s", herr);
    if (!gp)
        return 0;
    if (!have_gnuplot()) {
        if (!warned)
            console_log("gnuplot not found: no plots (install the Debian package gnuplot-nox); "
                        "the data and the script are in %s (gnuplot plots.gp)", dir);
        warned = 1;
        return 0;
    }
    return run_gnuplot(dir, "plots.gp", err, errlen);
}
