/* evaluator/probe: L2-regularised softmax regression with L-BFGS (probe.h). */
#include "errmsg/errmsg.h"
#include "evaluator/probe.h"

#include <cblas.h>
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
#define PROBE_FTOL          1e-5    /* mean relative decrease per iteration over FTOL_WINDOW iterations */
#define PROBE_VAL_FTOL      1e-4    /* ... of the validation fits */
#define PROBE_SMALL_WORK    1e7     /* below this many multiply-adds per pass (n d k), validation fits use ftol */
#define PROBE_VAL_ITER_SHARE 0.2    /* validation fits get this share of max_iter (warm-started chain) */
#define PROBE_GRID_PATIENCE 2       /* the grid stops after this many strengths in a row below the best */
#define FTOL_WINDOW         10
#define PROBE_HISTORY       10
#define PROBE_VAL_FRACTION  0.1
#define PROBE_SEED          7
#define ARMIJO_C1           1e-4
#define LINE_SEARCH_TRIES   40
#define CURVATURE_EPS       1e-12   /* pairs with s.y below this (relative) are not kept */
#define CHOL_BLOCK          64      /* columns factored at a time */
#define PRECOND_SHIFT       1.0     /* the preconditioner is gram + this * lambda */
#define PRECOND_MAX_DIM     4096    /* more features: no preconditioner (its factor is d x d) */
#define GRAM_MAX_ROWS       20000   /* rows that estimate the features' second moment */
#define GRAM_BLOCK_ROWS     2048    /* ... taken this many at a time */
#define STD_EPS             1e-8    /* columns with a smaller deviation are constant */

void eval_probe_defaults(eval_probe_opts *o)
{
    static const double grid[] = { 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6 };
    memset(o, 0, sizeof *o);
    o->max_iter = PROBE_MAX_ITER;
    o->grad_tol = PROBE_GRAD_TOL;
    o->ftol = PROBE_FTOL;
    o->val_ftol = PROBE_VAL_FTOL;
    o->val_iter_share = PROBE_VAL_ITER_SHARE;
    o->grid_patience = PROBE_GRID_PATIENCE;
    o->history = PROBE_HISTORY;
    o->n_lambdas = (int)(sizeof grid / sizeof grid[0]);
    memcpy(o->lambdas, grid, sizeof grid);
    o->val_fraction = PROBE_VAL_FRACTION;
    o->seed = PROBE_SEED;
    o->precondition = 1;
}

int eval_probe_few_labels(eval_probe_opts *o, size_t n, int k)
{
    if (n >= (size_t)EVAL_PROBE_FEW_PER_CLASS * (size_t)k)
        return 0;
    o->n_lambdas = 1;
    o->lambdas[0] = EVAL_PROBE_FIXED_LAMBDA;
    return 1;
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

/* The objective reads x once per evaluation: the rows are cut into chunks
 * (four per thread; each chunk sums into its own buffers, added up in a fixed
 * order, so the result does not depend on which thread ran which chunk), and
 * each chunk goes through x in blocks of rows small enough to stay in cache
 * between the two products (logits = x W, then grad W += x^T (d loss / d
 * logits)); inside a chunk nn_sgemm runs on the chunk's own thread. */
#define OBJ_BLOCK_BYTES     (256 * 1024)    /* of x per block of rows */
#define OBJ_MIN_BLOCK_ROWS  16
#define OBJ_MAX_BLOCK_ROWS  1024
#define OBJ_CHUNKS_PER_THREAD 4
#define OBJ_MAX_CHUNKS      32

typedef struct {
    const float *x;        /* (n, d) */
    const int32_t *y;      /* (n) */
    size_t n;
    int d, k;
    double lambda;
    int n_chunks;
    size_t block;          /* rows per block */
    float *wf;             /* (d, k) float copy of the weights */
    const double *b;       /* (k) biases of the point being evaluated */
    float *scratch;        /* (n_chunks, block, k) logits, then d loss / d logits */
    float *gw;             /* (n_chunks, d, k) each chunk's sum of x^T (d loss / d logits) */
    double *gb;            /* (n_chunks, k) ... and of d loss / d logits */
    double *loss;          /* (n_chunks) ... and of the loss */
    double *z;             /* (n_chunks, k) scratch of one row's scores */
} objective;

static void objective_free(objective *ob)
{
    free(ob->wf); free(ob->scratch); free(ob->gw); free(ob->gb); free(ob->loss); free(ob->z);
    memset(ob, 0, sizeof *ob);
}

static int objective_init(objective *ob, const float *x, const int32_t *y, size_t n, int d, int k, double lambda)
{
    memset(ob, 0, sizeof *ob);
    ob->x = x; ob->y = y; ob->n = n; ob->d = d; ob->k = k; ob->lambda = lambda;
    size_t rows = OBJ_BLOCK_BYTES / ((size_t)d * sizeof(float));
    rows = rows < OBJ_MIN_BLOCK_ROWS ? OBJ_MIN_BLOCK_ROWS : rows > OBJ_MAX_BLOCK_ROWS ? OBJ_MAX_BLOCK_ROWS : rows;
    ob->block = rows;
    size_t blocks = (n + rows - 1) / rows;
    int chunks = nn_parallel_threads() * OBJ_CHUNKS_PER_THREAD;
    if (chunks > OBJ_MAX_CHUNKS) chunks = OBJ_MAX_CHUNKS;
    if ((size_t)chunks > blocks) chunks = (int)blocks;
    ob->n_chunks = chunks > 0 ? chunks : 1;
    size_t nc = (size_t)ob->n_chunks, dk = (size_t)d * k;
    ob->wf = malloc(dk * sizeof *ob->wf);
    ob->scratch = malloc(nc * rows * (size_t)k * sizeof *ob->scratch);
    ob->gw = malloc(nc * dk * sizeof *ob->gw);
    ob->gb = malloc(nc * (size_t)k * sizeof *ob->gb);
    ob->loss = malloc(nc * sizeof *ob->loss);
    ob->z = malloc(nc * (size_t)k * sizeof *ob->z);
    if (!ob->wf || !ob->scratch || !ob->gw || !ob->gb || !ob->loss || !ob->z) {
        objective_free(ob);
        return -1;
    }
    return 0;
}

/* Softmax cross-entropy of one row: turns its logits l (k) into
 * d loss / d logits = p - onehot(yi), adds that to gb (k), returns the row's
 * loss. z (k) is scratch. */
static double row_softmax(float *l, const double *b, int yi, int k, double *gb, double *z)
{
    double mx = -INFINITY, sum = 0.0;
    for (int c = 0; c < k; c++) {
        z[c] = (double)l[c] + b[c];
        if (z[c] > mx) mx = z[c];
    }
    double zy = z[yi];
    for (int c = 0; c < k; c++) {
        z[c] = exp(z[c] - mx);
        sum += z[c];
    }
    for (int c = 0; c < k; c++) {
        double p = z[c] / sum - (c == yi ? 1.0 : 0.0);
        l[c] = (float)p;
        gb[c] += p;
    }
    return mx + log(sum) - zy;            /* log-sum-exp minus the true class's logit */
}

static void objective_chunks(void *ctx, size_t begin, size_t end)
{
    objective *ob = ctx;
    int d = ob->d, k = ob->k;
    for (size_t c = begin; c < end; c++) {
        size_t r0 = ob->n * c / (size_t)ob->n_chunks, r1 = ob->n * (c + 1) / (size_t)ob->n_chunks;
        float *l = ob->scratch + c * ob->block * (size_t)k, *gw = ob->gw + c * (size_t)d * k;
        double *gb = ob->gb + c * (size_t)k, *z = ob->z + c * (size_t)k, loss = 0.0;
        memset(gb, 0, (size_t)k * sizeof *gb);
        for (size_t i0 = r0; i0 < r1; i0 += ob->block) {
            int rows = (int)(r1 - i0 < ob->block ? r1 - i0 : ob->block);
            const float *xb = ob->x + i0 * (size_t)d;
            nn_sgemm(0, 0, rows, k, d, 1.0f, xb, d, ob->wf, k, 0.0f, l, k);
            for (int i = 0; i < rows; i++)
                loss += row_softmax(l + (size_t)i * k, ob->b, ob->y[i0 + (size_t)i], k, gb, z);
            nn_sgemm(1, 0, d, k, rows, 1.0f, xb, d, l, k, i0 == r0 ? 0.0f : 1.0f, gw, k);
        }
        if (r1 == r0)
            memset(gw, 0, (size_t)d * k * sizeof *gw);
        ob->loss[c] = loss;
    }
}

/* f(w) and its gradient g ((d + 1) x k). */
static double objective_eval(objective *ob, const double *w, double *g)
{
    int d = ob->d, k = ob->k;
    size_t dk = (size_t)d * k;
    for (size_t i = 0; i < dk; i++)
        ob->wf[i] = (float)w[i];
    ob->b = w + dk;
    nn_parallel_for((size_t)ob->n_chunks, 1, objective_chunks, ob);
    double loss = 0.0, reg = 0.0, inv_n = 1.0 / (double)ob->n;
    double *gb = g + dk;
    memset(gb, 0, (size_t)k * sizeof *gb);
    for (size_t i = 0; i < dk; i++) {
        double s = 0.0;
        for (int c = 0; c < ob->n_chunks; c++)
            s += ob->gw[(size_t)c * dk + i];
        reg += w[i] * w[i];
        g[i] = s * inv_n + ob->lambda * w[i];
    }
    for (int c = 0; c < ob->n_chunks; c++) {
        loss += ob->loss[c];
        for (int j = 0; j < k; j++)
            gb[j] += ob->gb[(size_t)c * k + j];
    }
    for (int j = 0; j < k; j++)
        gb[j] *= inv_n;
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

/* ------------------------------------------------------- preconditioner */

int eval_feature_gram(double *gram, const float *x, size_t n, int d, size_t max_rows,
                      atomic_int *stop)
{
    size_t m = max_rows && n > max_rows ? max_rows : n;
    float *rows = malloc(GRAM_BLOCK_ROWS * (size_t)d * sizeof *rows), *g = malloc((size_t)d * d * sizeof *g);
    int rc = rows && g && m ? 0 : -1;
    /* evenly spaced rows, a block at a time (stop is checked in between) */
    for (size_t i0 = 0; i0 < m && rc == 0; i0 += GRAM_BLOCK_ROWS) {
        if (stop && *stop) {
            rc = -1;
            break;
        }
        size_t b = m - i0 < GRAM_BLOCK_ROWS ? m - i0 : GRAM_BLOCK_ROWS;
        for (size_t i = 0; i < b; i++)
            memcpy(rows + i * (size_t)d, x + ((i0 + i) * n / m) * (size_t)d, (size_t)d * sizeof *rows);
        nn_sgemm(1, 0, d, d, (int)b, 1.0f / (float)m, rows, d, rows, d, i0 ? 1.0f : 0.0f, g, d);
    }
    for (size_t i = 0; i < (size_t)d * d && rc == 0; i++)
        gram[i] = g[i];
    free(rows);
    free(g);
    return rc;
}

/* Cholesky factor of the symmetric a (d, d), row-major, in place: the lower
 * triangle becomes L (a = L L^T), the upper one is left as it was. Blocked:
 * the trailing updates are dtrsm and dsyrk. 0, or -1 when a is not positive
 * definite. */
static int cholesky(double *a, int d)
{
    for (int j0 = 0; j0 < d; j0 += CHOL_BLOCK) {
        int nb = d - j0 < CHOL_BLOCK ? d - j0 : CHOL_BLOCK, rest = d - j0 - nb;
        for (int j = j0; j < j0 + nb; j++) {          /* the diagonal block, unblocked */
            double *rj = a + (size_t)j * d;
            for (int i = j; i < j0 + nb; i++) {
                double *ri = a + (size_t)i * d, s = ri[j];
                for (int q = j0; q < j; q++)
                    s -= ri[q] * rj[q];
                if (i == j) {
                    if (!(s > 0.0))
                        return -1;
                    rj[j] = sqrt(s);
                } else
                    ri[j] = s / rj[j];
            }
        }
        if (rest == 0)
            break;
        double *l11 = a + (size_t)j0 * d + j0, *a21 = a + (size_t)(j0 + nb) * d + j0;
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rest, nb, 1.0, l11, d, a21, d);
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, rest, nb, -1.0, a21, d, 1.0, a21 + nb, d);
    }
    return 0;
}

/* v ((d + 1) x k) = P^-1 v: the weights' part solved with the Cholesky factor
 * of (gram + shift), the biases' part left alone. */
static void precond_apply(const double *chol, int d, int k, double *v)
{
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, d, k, 1.0, chol, d, v, k);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, d, k, 1.0, chol, d, v, k);
}

/* ----------------------------------------------------------------- L-BFGS */

int eval_logreg_fit(double *w, const float *x, const int32_t *y, size_t n, int d, int k, double lambda,
                    const double *gram, const eval_probe_opts *o, int *iters_out, int *converged_out,
                    double *loss_out, char *err, size_t errlen)
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
    objective ob;
    int ob_rc = objective_init(&ob, x, y, n, d, k, lambda);
    double *mem = malloc((5 + 2 * (size_t)m) * p * sizeof *mem);
    double *rho = malloc((size_t)m * sizeof *rho), *alpha = malloc((size_t)m * sizeof *alpha);
    double *chol = gram ? malloc((size_t)d * d * sizeof *chol) : NULL;
    if (ob_rc || !mem || !rho || !alpha || (gram && !chol)) {
        objective_free(&ob); free(mem); free(rho); free(alpha); free(chol);
        errmsg_set(err, errlen, "probe: out of memory (%zu items x %d classes)", n, k);
        return -1;
    }
    if (chol) {
        memcpy(chol, gram, (size_t)d * d * sizeof *chol);
        for (int j = 0; j < d; j++)
            chol[(size_t)j * d + j] += PRECOND_SHIFT * lambda;
        if (cholesky(chol, d)) {                  /* cannot happen for lambda > 0; plain L-BFGS then */
            free(chol);
            chol = NULL;
        }
    }
    double *g = mem, *dir = mem + p, *wn = mem + 2 * p, *gn = mem + 3 * p, *hy = mem + 4 * p;
    double *S = mem + 5 * p, *Y = S + (size_t)m * p;
    int hist = 0, head = 0, it = 0, converged = 0, rc = 0;
    double gamma = 1.0;
    double f = objective_eval(&ob, w, g);
    double fwin[FTOL_WINDOW];              /* f of the last iterations, fwin[it % FTOL_WINDOW] */
    for (it = 0; it < o->max_iter; it++) {
        fwin[it % FTOL_WINDOW] = f;
        if (o->stop && *o->stop) {
            errmsg_set(err, errlen, "probe: stopped");
            rc = -1;
            break;
        }
        if (max_abs(g, p) < o->grad_tol) {
            converged = 1;
            break;
        }
        /* two-loop recursion: dir = -H g, H0 = gamma P^-1 */
        for (size_t i = 0; i < p; i++)
            dir[i] = g[i];
        for (int j = 0; j < hist; j++) {
            int s = (head - 1 - j + m) % m;
            alpha[s] = rho[s] * dot(S + (size_t)s * p, dir, p);
            double *ys = Y + (size_t)s * p;
            for (size_t i = 0; i < p; i++)
                dir[i] -= alpha[s] * ys[i];
        }
        if (chol)
            precond_apply(chol, d, k, dir);
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
                dir[i] = g[i];
            if (chol)
                precond_apply(chol, d, k, dir);
            for (size_t i = 0; i < p; i++)
                dir[i] = -dir[i];
            gd = dot(g, dir, p);
        }
        double t = 1.0;
        if (hist == 0) {
            double dn = sqrt(dot(dir, dir, p));
            t = dn > 1.0 ? 1.0 / dn : 1.0;
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
            double yhy = yy;
            if (chol) {
                memcpy(hy, ys, p * sizeof *hy);
                precond_apply(chol, d, k, hy);
                yhy = dot(ys, hy, p);
            }
            rho[head] = 1.0 / sy;
            gamma = yhy > 0.0 ? sy / yhy : 1.0;
            head = (head + 1) % m;
            if (hist < m)
                hist++;
        }
        memcpy(w, wn, p * sizeof *w);
        memcpy(g, gn, p * sizeof *g);
        f = fn;
        /* the mean relative decrease over the last FTOL_WINDOW iterations */
        if (it + 1 >= FTOL_WINDOW &&
            fwin[(it + 1) % FTOL_WINDOW] - f <= o->ftol * FTOL_WINDOW * fmax(1.0, fabs(f))) {
            converged = 1;
            it++;
            break;
        }
    }
    if (iters_out) *iters_out = it;
    if (converged_out) *converged_out = converged;
    if (loss_out) *loss_out = f;
    objective_free(&ob); free(mem); free(rho); free(alpha); free(chol);
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
    double *w = calloc(p, sizeof *w), *best_w = calloc(p, sizeof *best_w), *gram = NULL;
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
    /* the preconditioner pays when a pass over the items costs more than its d x d solves */
    if (o->precondition && d <= PRECOND_MAX_DIM && ntr >= (size_t)d &&
        (!(gram = malloc((size_t)d * d * sizeof *gram)) || eval_feature_gram(gram, xs, ntr, d, GRAM_MAX_ROWS, o->stop))) {
        free(gram);
        gram = NULL;                       /* plain L-BFGS */
    }

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
        vo.max_iter = (int)(o->max_iter * o->val_iter_share) > 0 ? (int)(o->max_iter * o->val_iter_share) : 1;
        /* a small problem's choice rests on few validation items, and tight fits cost nothing there */
        vo.ftol = (double)n_fit * d * k < PROBE_SMALL_WORK ? o->ftol : o->val_ftol;
        int below = 0;
        for (int li = 0; li < o->n_lambdas; li++) {
            double t1, t5;
            if (eval_logreg_fit(w, xa, ya, n_fit, d, k, o->lambdas[li], gram, &vo, NULL, NULL, NULL, err, errlen) ||
                eval_logreg_score(w, xv, yv, n_val, d, k, &t1, &t5))
                goto done;
            if (t1 > best) {
                best = t1;
                lambda = o->lambdas[li];
                memcpy(best_w, w, p * sizeof *w);
                below = 0;
            } else if (o->grid_patience > 0 && ++below >= o->grid_patience)
                break;                     /* weaker strengths keep losing: past the best */
        }
        r->val_top1 = best;
        memcpy(w, best_w, p * sizeof *w);
    }
    if (eval_logreg_fit(w, xs, ys, ntr, d, k, lambda, gram, o, &r->iters, &r->converged, &r->loss, err, errlen) ||
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
    free(mean); free(inv_std); free(xs); free(xt); free(ys); free(w); free(best_w); free(gram);
    free(fit_idx); free(val_idx); free(xa); free(xv); free(ya); free(yv);
    return rc;
}
