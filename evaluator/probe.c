/* evaluator/probe: L2-regularised softmax regression with L-BFGS (probe.h). */
#include "errmsg/errmsg.h"
#include "evaluator/probe.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluator/knn.h"
#include "dataset/split.h"
#include "nn/parallel.h"

#define PROBE_MAX_ITER      500
#define PROBE_GRAD_TOL      1e-5
#define PROBE_FTOL          1e-9
#define VAL_ITER_SHARE      0.4     /* validation fits get this share of max_iter (warm-started chain) */
#define PROBE_HISTORY       10
#define PROBE_VAL_FRACTION  0.1
#define PROBE_SEED          7
#define ARMIJO_C1           1e-4
#define LINE_SEARCH_TRIES   40
#define CURVATURE_EPS       1e-12   /* pairs with s.y below this (relative) are not kept */
#define STD_EPS             1e-8    /* columns with a smaller deviation are constant */

void eval_probe_defaults(eval_probe_opts *o)
{
    static const double grid[] = { 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6 };
    memset(o, 0, sizeof *o);
    o->max_iter = PROBE_MAX_ITER;
    o->grad_tol = PROBE_GRAD_TOL;
    o->ftol = PROBE_FTOL;
    o->history = PROBE_HISTORY;
    o->n_lambdas = (int)(sizeof grid / sizeof grid[0]);
    memcpy(o->lambdas, grid, sizeof grid);
    o->val_fraction = PROBE_VAL_FRACTION;
    o->seed = PROBE_SEED;
}

/* ---------------------------------------------------------- standardising */

void eval_standardize_fit(double *mean, double *inv_std, const float *x, const size_t *idx, size_t n, int d)
{
    double *sq = calloc((size_t)d, sizeof *sq);
    memset(mean, 0, (size_t)d * sizeof *mean);
    for (size_t i = 0; i < n; i++) {
        const float *r = x + (idx ? idx[i] : i) * (size_t)d;
        for (int j = 0; j < d; j++)
            mean[j] += r[j];
    }
    for (int j = 0; j < d; j++)
        mean[j] /= n ? (double)n : 1.0;
    for (size_t i = 0; i < n && sq; i++) {
        const float *r = x + (idx ? idx[i] : i) * (size_t)d;
        for (int j = 0; j < d; j++) {
            double c = r[j] - mean[j];
            sq[j] += c * c;
        }
    }
    for (int j = 0; j < d; j++) {
        double sd = sq && n ? sqrt(sq[j] / (double)n) : 0.0;
        inv_std[j] = sd > STD_EPS ? 1.0 / sd : 0.0;
    }
    free(sq);
}

void eval_standardize_apply(float *dst, const float *x, const size_t *idx, size_t n, int d,
                            const double *mean, const double *inv_std)
{
    for (size_t i = 0; i < n; i++) {
        const float *r = x + (idx ? idx[i] : i) * (size_t)d;
        float *o = dst + i * (size_t)d;
        for (int j = 0; j < d; j++)
            o[j] = (float)((r[j] - mean[j]) * inv_std[j]);
    }
}

/* ------------------------------------------------------- objective */

typedef struct {
    const float *x;        /* (n, d) */
    const int32_t *y;      /* (n) */
    size_t n;
    int d, k;
    double lambda;
    float *wf;             /* (d, k) float copy of the weights */
    float *logits;         /* (n, k), then d loss / d logits */
    float *gw;             /* (d, k) */
} objective;

/* f(w) and its gradient g ((d + 1) x k). */
static double objective_eval(objective *ob, const double *w, double *g)
{
    size_t n = ob->n;
    int d = ob->d, k = ob->k;
    for (size_t i = 0; i < (size_t)d * k; i++)
        ob->wf[i] = (float)w[i];
    const double *b = w + (size_t)d * k;
    nn_sgemm(0, 0, (int)n, k, d, 1.0f, ob->x, d, ob->wf, k, 0.0f, ob->logits, k);
    double loss = 0.0;
    double *gb = g + (size_t)d * k;
    memset(gb, 0, (size_t)k * sizeof *gb);
    double inv_n = 1.0 / (double)n;
    for (size_t i = 0; i < n; i++) {
        float *l = ob->logits + i * (size_t)k;
        double z[64], *zz = z, mx = -INFINITY, sum = 0.0;
        double *heap = NULL;
        if (k > 64)
            zz = heap = malloc((size_t)k * sizeof *heap);
        for (int c = 0; c < k; c++) {
            zz[c] = (double)l[c] + b[c];
            if (zz[c] > mx) mx = zz[c];
        }
        int yi = ob->y[i];
        double zy = zz[yi];
        for (int c = 0; c < k; c++) {
            zz[c] = exp(zz[c] - mx);
            sum += zz[c];
        }
        loss += mx + log(sum) - zy;       /* log-sum-exp minus the true class's logit */
        for (int c = 0; c < k; c++) {
            double p = zz[c] / sum - (c == yi ? 1.0 : 0.0);
            l[c] = (float)(p * inv_n);
            gb[c] += p * inv_n;
        }
        free(heap);
    }
    nn_sgemm(1, 0, d, k, (int)n, 1.0f, ob->x, d, ob->logits, k, 0.0f, ob->gw, k);
    double reg = 0.0;
    for (size_t i = 0; i < (size_t)d * k; i++) {
        reg += w[i] * w[i];
        g[i] = (double)ob->gw[i] + ob->lambda * w[i];
    }
    return loss * inv_n + 0.5 * ob->lambda * reg;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

int eval_logreg_fit(double *w, const float *x, const int32_t *y, size_t n, int d, int k, double lambda,
                    const eval_probe_opts *o, int *iters_out, int *converged_out, double *loss_out,
                    char *err, size_t errlen)
{
    if (n == 0 || d < 1 || k < 2) {
        errmsg_set(err, errlen, "probe: needs items, features and at least two classes (got %zu, %d, %d)", n, d, k);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k) {
            errmsg_set(err, errlen, "probe: label %d of item %zu outside 0..%d", y[i], i, k - 1);
            return -1;
        }
    size_t p = (size_t)(d + 1) * k;
    int m = o->history > 0 ? o->history : PROBE_HISTORY;
    objective ob = { x, y, n, d, k, lambda, NULL, NULL, NULL };
    ob.wf = malloc((size_t)d * k * sizeof *ob.wf);
    ob.gw = malloc((size_t)d * k * sizeof *ob.gw);
    ob.logits = malloc(n * (size_t)k * sizeof *ob.logits);
    double *mem = malloc((4 + 2 * (size_t)m) * p * sizeof *mem);
    double *rho = malloc((size_t)m * sizeof *rho), *alpha = malloc((size_t)m * sizeof *alpha);
    if (!ob.wf || !ob.gw || !ob.logits || !mem || !rho || !alpha) {
        free(ob.wf); free(ob.gw); free(ob.logits); free(mem); free(rho); free(alpha);
        errmsg_set(err, errlen, "probe: out of memory (%zu items x %d classes)", n, k);
        return -1;
    }
    double *g = mem, *dir = mem + p, *wn = mem + 2 * p, *gn = mem + 3 * p;
    double *S = mem + 4 * p, *Y = S + (size_t)m * p;
    int hist = 0, head = 0, it = 0, converged = 0, rc = 0;
    double gamma = 1.0;
    double f = objective_eval(&ob, w, g);
    for (it = 0; it < o->max_iter; it++) {
        if (o->stop && *o->stop) {
            errmsg_set(err, errlen, "probe: stopped");
            rc = -1;
            break;
        }
        if (max_abs(g, p) < o->grad_tol) {
            converged = 1;
            break;
        }
        /* two-loop recursion: dir = -H g */
        for (size_t i = 0; i < p; i++)
            dir[i] = g[i];
        for (int j = 0; j < hist; j++) {
            int s = (head - 1 - j + m) % m;
            alpha[s] = rho[s] * dot(S + (size_t)s * p, dir, p);
            double *ys = Y + (size_t)s * p;
            for (size_t i = 0; i < p; i++)
                dir[i] -= alpha[s] * ys[i];
        }
        for (size_t i = 0; i < p; i++)
            dir[i] *= gamma;
        for (int j = hist - 1; j >= 0; j--) {
            int s = (head - 1 - j + m) % m;
            double beta = rho[s] * dot(Y + (size_t)s * p, dir, p);
            double *ss = S + (size_t)s * p;
            for (size_t i = 0; i < p; i++)
                dir[i] += ss[i] * (alpha[s] - beta);
        }
        for (size_t i = 0; i < p; i++)
            dir[i] = -dir[i];
        double gd = dot(g, dir, p);
        if (!(gd < 0.0)) {                /* not a descent direction: restart */
            hist = 0;
            for (size_t i = 0; i < p; i++)
                dir[i] = -g[i];
            gd = -dot(g, g, p);
        }
        double t = 1.0;
        if (hist == 0) {
            double gn2 = sqrt(dot(g, g, p));
            t = gn2 > 1.0 ? 1.0 / gn2 : 1.0;
        }
        double fn = f;
        int ok = 0;
        for (int tries = 0; tries < LINE_SEARCH_TRIES; tries++) {
            for (size_t i = 0; i < p; i++)
                wn[i] = w[i] + t * dir[i];
            fn = objective_eval(&ob, wn, gn);
            if (isfinite(fn) && fn <= f + ARMIJO_C1 * t * gd) {
                ok = 1;
                break;
            }
            t *= 0.5;
        }
        if (!ok) {                        /* no decrease left at float precision */
            converged = 1;
            break;
        }
        /* the new pair s = wn - w, y = gn - g */
        double *ss = S + (size_t)head * p, *ys = Y + (size_t)head * p;
        for (size_t i = 0; i < p; i++) {
            ss[i] = wn[i] - w[i];
            ys[i] = gn[i] - g[i];
        }
        double sy = dot(ss, ys, p), yy = dot(ys, ys, p);
        if (sy > CURVATURE_EPS * yy && yy > 0.0) {
            rho[head] = 1.0 / sy;
            gamma = sy / yy;
            head = (head + 1) % m;
            if (hist < m)
                hist++;
        }
        double decrease = f - fn;
        memcpy(w, wn, p * sizeof *w);
        memcpy(g, gn, p * sizeof *g);
        f = fn;
        if (decrease <= o->ftol * fmax(1.0, fabs(f))) {
            converged = 1;
            it++;
            break;
        }
    }
    if (iters_out) *iters_out = it;
    if (converged_out) *converged_out = converged;
    if (loss_out) *loss_out = f;
    free(ob.wf); free(ob.gw); free(ob.logits); free(mem); free(rho); free(alpha);
    return rc;
}

int eval_logreg_score(const double *w, const float *x, const int32_t *y, size_t n, int d, int k,
                      double *top1, double *top5)
{
    float *wf = malloc((size_t)d * k * sizeof *wf), *logits = malloc(n * (size_t)k * sizeof *logits);
    double *scores = malloc((size_t)k * sizeof *scores);
    if (!wf || !logits || !scores) {
        free(wf); free(logits); free(scores);
        return -1;
    }
    for (size_t i = 0; i < (size_t)d * k; i++)
        wf[i] = (float)w[i];
    if (n)
        nn_sgemm(0, 0, (int)n, k, d, 1.0f, x, d, wf, k, 0.0f, logits, k);
    long h1 = 0, h5 = 0;
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < k; c++)
            scores[c] = (double)logits[i * (size_t)k + c] + w[(size_t)d * k + c];
        int a, b;
        eval_topk_hits(scores, k, y[i], &a, &b);
        h1 += a;
        h5 += b;
    }
    *top1 = n ? (double)h1 / (double)n : 0.0;
    *top5 = n ? (double)h5 / (double)n : 0.0;
    free(wf); free(logits); free(scores);
    return 0;
}

/* ------------------------------------------------------------ the probe */

int eval_probe(const float *xtr, const int32_t *ytr, const size_t *idx, size_t ntr,
               const float *xte, const int32_t *yte, size_t nte, int d, int k,
               const eval_probe_opts *o, eval_probe_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (err && errlen)
        err[0] = 0;
    if (o->n_lambdas < 1) {
        errmsg_set(err, errlen, "probe: no regularisation strength to try");
        return -1;
    }
    size_t p = (size_t)(d + 1) * k;
    double *mean = malloc((size_t)d * sizeof *mean), *inv_std = malloc((size_t)d * sizeof *inv_std);
    float *xs = malloc(ntr * (size_t)d * sizeof *xs), *xt = malloc((nte ? nte : 1) * (size_t)d * sizeof *xt);
    int32_t *ys = malloc((ntr ? ntr : 1) * sizeof *ys);
    double *w = calloc(p, sizeof *w), *best_w = calloc(p, sizeof *best_w);
    size_t *fit_idx = NULL, *val_idx = NULL, n_fit = 0, n_val = 0;
    float *xa = NULL, *xv = NULL;
    int32_t *ya = NULL, *yv = NULL;
    int rc = -1;
    if (!mean || !inv_std || !xs || !xt || !ys || !w || !best_w) {
        errmsg_set(err, errlen, "probe: out of memory for %zu x %d features", ntr, d);
        goto done;
    }
    for (size_t i = 0; i < ntr; i++)
        ys[i] = ytr[idx ? idx[i] : i];
    eval_standardize_fit(mean, inv_std, xtr, idx, ntr, d);
    eval_standardize_apply(xs, xtr, idx, ntr, d, mean, inv_std);
    eval_standardize_apply(xt, xte, NULL, nte, d, mean, inv_std);

    double lambda = o->lambdas[0];
    r->val_top1 = NAN;
    if (o->n_lambdas > 1) {
        if (split_two(ys, ntr, k, o->val_fraction, o->seed, &fit_idx, &n_fit, &val_idx, &n_val, err, errlen))
            goto done;
        if (n_val == 0 || n_fit == 0) {
            errmsg_set(err, errlen, "probe: %zu training items are too few for a validation split of %g",
                    ntr, o->val_fraction);
            goto done;
        }
        xa = malloc(n_fit * (size_t)d * sizeof *xa);
        xv = malloc(n_val * (size_t)d * sizeof *xv);
        ya = malloc(n_fit * sizeof *ya);
        yv = malloc(n_val * sizeof *yv);
        if (!xa || !xv || !ya || !yv) {
            errmsg_set(err, errlen, "probe: out of memory for the validation split");
            goto done;
        }
        for (size_t i = 0; i < n_fit; i++) {
            memcpy(xa + i * (size_t)d, xs + fit_idx[i] * (size_t)d, (size_t)d * sizeof *xa);
            ya[i] = ys[fit_idx[i]];
        }
        for (size_t i = 0; i < n_val; i++) {
            memcpy(xv + i * (size_t)d, xs + val_idx[i] * (size_t)d, (size_t)d * sizeof *xv);
            yv[i] = ys[val_idx[i]];
        }
        /* strongest first, each fit warm-started from the previous one */
        double best = -1.0;
        eval_probe_opts vo = *o;
        vo.max_iter = (int)(o->max_iter * VAL_ITER_SHARE) > 0 ? (int)(o->max_iter * VAL_ITER_SHARE) : 1;
        for (int li = 0; li < o->n_lambdas; li++) {
            double t1, t5;
            if (eval_logreg_fit(w, xa, ya, n_fit, d, k, o->lambdas[li], &vo, NULL, NULL, NULL, err, errlen) ||
                eval_logreg_score(w, xv, yv, n_val, d, k, &t1, &t5))
                goto done;
            if (t1 > best) {
                best = t1;
                lambda = o->lambdas[li];
                memcpy(best_w, w, p * sizeof *w);
            }
        }
        r->val_top1 = best;
        memcpy(w, best_w, p * sizeof *w);
    }
    if (eval_logreg_fit(w, xs, ys, ntr, d, k, lambda, o, &r->iters, &r->converged, &r->loss, err, errlen) ||
        eval_logreg_score(w, xt, yte, nte, d, k, &r->top1, &r->top5)) {
        if (err && errlen && !err[0])
            errmsg_set(err, errlen, "probe: out of memory scoring the test items");
        goto done;
    }
    r->lambda = lambda;
    r->n_train = n_fit ? n_fit : ntr;
    r->n_val = n_val;
    rc = 0;
done:
    free(mean); free(inv_std); free(xs); free(xt); free(ys); free(w); free(best_w);
    free(fit_idx); free(val_idx); free(xa); free(xv); free(ya); free(yv);
    return rc;
}
