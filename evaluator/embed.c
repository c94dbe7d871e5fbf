/* evaluator/embed: PCA, exact t-SNE, map purity and silhouette (embed.h). */
#include "evaluator/embed.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg/errmsg.h"
#include "nn/parallel.h"
#include "splitmix/splitmix.h"

#define JACOBI_SWEEPS      100
#define JACOBI_TOL         1e-15     /* off-diagonal mass, relative, where Jacobi stops */
#define PCA_EXACT_MAX_D    64        /* up to this many features, Jacobi on the whole covariance */
#define PCA_OVERSAMPLE     10        /* extra axes the subspace iteration carries */
#define PCA_MAX_ITERS      100
#define PCA_TOL            1e-5      /* change of the kept variances, relative to the largest, where it stops */
#define PCA_SEED           0x9ca5eedull
#define TSNE_BETA_STEPS    100       /* binary search on each row's precision */
#define TSNE_ENTROPY_TOL   1e-5
#define TSNE_P_MIN         1e-12f
#define TSNE_START_STD     1e-4
#define TSNE_MOMENTUM0     0.5
#define TSNE_MOMENTUM1     0.8
#define TSNE_GAIN_UP       0.2
#define TSNE_GAIN_DOWN     0.8
#define TSNE_GAIN_MIN      0.01
#define TSNE_MIN_RATE      50.0
#define ROW_GRAIN          16        /* rows per parallel slice at least */
#define SIL_BLOCK          256       /* rows of distances at a time */

static double gauss(uint64_t *s)
{
    double u = ((double)(splitmix64_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(splitmix64_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void eval_tsne_defaults(eval_tsne_opts *o)
{
    memset(o, 0, sizeof *o);
    o->perplexity = EVAL_TSNE_PERPLEXITY;
    o->iters = EVAL_TSNE_ITERS;
    o->exag_iters = EVAL_TSNE_EXAG_ITERS;
    o->exaggeration = EVAL_TSNE_EXAGGERATION;
    o->seed = 1;
}

/* ------------------------------------------------------------------ PCA */

void eval_jacobi_eigen(double *a, int m, double *val, double *vec)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            vec[i * m + j] = i == j;
    double total = 0.0;
    for (int i = 0; i < m * m; i++)
        total += a[i] * a[i];
    for (int sweep = 0; sweep < JACOBI_SWEEPS; sweep++) {
        double off = 0.0;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++)
                off += 2.0 * a[p * m + q] * a[p * m + q];
        if (off <= JACOBI_TOL * JACOBI_TOL * total || off == 0.0)
            break;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++) {
                double apq = a[p * m + q];
                if (apq == 0.0)
                    continue;
                double theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < m; k++) {          /* columns p and q */
                    double akp = a[k * m + p], akq = a[k * m + q];
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for (int k = 0; k < m; k++) {          /* rows p and q */
                    double apk = a[p * m + k], aqk = a[q * m + k];
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < m; k++) {
                    double vkp = vec[k * m + p], vkq = vec[k * m + q];
                    vec[k * m + p] = c * vkp - s * vkq;
                    vec[k * m + q] = s * vkp + c * vkq;
                }
            }
    }
    /* sort decreasing (selection sort: m is small) */
    for (int i = 0; i < m; i++)
        val[i] = a[i * m + i];
    for (int i = 0; i < m; i++) {
        int best = i;
        for (int j = i + 1; j < m; j++)
            if (val[j] > val[best])
                best = j;
        if (best != i) {
            double t = val[i]; val[i] = val[best]; val[best] = t;
            for (int k = 0; k < m; k++) {
                t = vec[k * m + i]; vec[k * m + i] = vec[k * m + best]; vec[k * m + best] = t;
            }
        }
    }
}

/* Orthonormalises the p columns of v (d, p) (modified Gram-Schmidt, twice);
 * a column that vanishes is replaced by a random one. */
static void orthonormalise(double *v, int d, int p, uint64_t *rng)
{
    for (int j = 0; j < p; j++) {
        for (int attempt = 0; attempt < 3; attempt++) {
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < j; i++) {
                    double dot = 0.0;
                    for (int r = 0; r < d; r++)
                        dot += v[r * p + i] * v[r * p + j];
                    for (int r = 0; r < d; r++)
                        v[r * p + j] -= dot * v[r * p + i];
                }
            double norm = 0.0;
            for (int r = 0; r < d; r++)
                norm += v[r * p + j] * v[r * p + j];
            norm = sqrt(norm);
            if (norm > 1e-30) {
                for (int r = 0; r < d; r++)
                    v[r * p + j] /= norm;
                break;
            }
            for (int r = 0; r < d; r++)
                v[r * p + j] = gauss(rng);
        }
    }
}

/* Rayleigh-Ritz: h = v^T c v (p, p) (cv = c v given), then v <- v E and
 * cv <- cv E, E the eigenvectors of h sorted by decreasing eigenvalue (val). */
static void ritz(double *v, double *cv, int d, int p, double *val, double *h, double *e, double *tmp)
{
    for (int i = 0; i < p; i++)
        for (int j = 0; j < p; j++)
            h[i * p + j] = 0.0;
    for (int r = 0; r < d; r++)
        for (int i = 0; i < p; i++) {
            double vi = v[r * p + i];
            for (int j = 0; j < p; j++)
                h[i * p + j] += vi * cv[r * p + j];
        }
    for (int i = 0; i < p; i++)                 /* symmetrise rounding */
        for (int j = i + 1; j < p; j++)
            h[i * p + j] = h[j * p + i] = 0.5 * (h[i * p + j] + h[j * p + i]);
    eval_jacobi_eigen(h, p, val, e);
    double *mats[2] = { v, cv };
    for (int w = 0; w < 2; w++)
        for (int r = 0; r < d; r++) {
            double *row = mats[w] + (size_t)r * p;
            for (int j = 0; j < p; j++) {
                double s = 0.0;
                for (int i = 0; i < p; i++)
                    s += row[i] * e[i * p + j];
                tmp[j] = s;
            }
            memcpy(row, tmp, (size_t)p * sizeof *tmp);
        }
}

/* The top m eigenvectors of the symmetric c (d, d) into the columns of
 * axes (d, m), eigenvalues into val (m). */
static int top_eigen(const float *c, int d, int m, double *val, double *axes)
{
    if (d <= PCA_EXACT_MAX_D || m + PCA_OVERSAMPLE >= d) {
        double *a = malloc((size_t)d * d * sizeof *a), *vec = malloc((size_t)d * d * sizeof *vec),
               *all = malloc((size_t)d * sizeof *all);
        if (!a || !vec || !all) {
            free(a); free(vec); free(all);
            return -1;
        }
        for (size_t i = 0; i < (size_t)d * d; i++)
            a[i] = c[i];
        eval_jacobi_eigen(a, d, all, vec);
        for (int r = 0; r < d; r++)
            for (int j = 0; j < m; j++)
                axes[r * m + j] = vec[r * d + j];
        memcpy(val, all, (size_t)m * sizeof *val);
        free(a); free(vec); free(all);
        return 0;
    }
    int p = m + PCA_OVERSAMPLE;
    double *v = malloc((size_t)d * p * sizeof *v), *cv = malloc((size_t)d * p * sizeof *cv);
    double *h = malloc((size_t)p * p * sizeof *h), *e = malloc((size_t)p * p * sizeof *e);
    double *ev = malloc((size_t)p * sizeof *ev), *prev = malloc((size_t)p * sizeof *prev),
           *tmp = malloc((size_t)p * sizeof *tmp);
    float *vf = malloc((size_t)d * p * sizeof *vf), *cvf = malloc((size_t)d * p * sizeof *cvf);
    int rc = -1;
    if (!v || !cv || !h || !e || !ev || !prev || !tmp || !vf || !cvf)
        goto done;
    uint64_t rng = PCA_SEED;
    for (size_t i = 0; i < (size_t)d * p; i++)
        v[i] = gauss(&rng);
    orthonormalise(v, d, p, &rng);
    for (int j = 0; j < p; j++)
        prev[j] = 0.0;
    for (int it = 0; it < PCA_MAX_ITERS; it++) {
        for (size_t i = 0; i < (size_t)d * p; i++)
            vf[i] = (float)v[i];
        nn_sgemm(0, 0, d, p, d, 1.0f, c, d, vf, p, 0.0f, cvf, p);        /* C V */
        for (size_t i = 0; i < (size_t)d * p; i++)
            cv[i] = cvf[i];
        ritz(v, cv, d, p, ev, h, e, tmp);
        double change = 0.0;
        for (int j = 0; j < m; j++) {
            double rel = fabs(ev[j] - prev[j]) / (fabs(ev[0]) > 0 ? fabs(ev[0]) : 1.0);
            if (rel > change)
                change = rel;
            prev[j] = ev[j];
        }
        if ((it > 0 && change < PCA_TOL) || it == PCA_MAX_ITERS - 1)
            break;
        /* next subspace: C V (rotated as V was), orthonormalised */
        memcpy(v, cv, (size_t)d * p * sizeof *v);
        orthonormalise(v, d, p, &rng);
    }
    for (int r = 0; r < d; r++)
        for (int j = 0; j < m; j++)
            axes[r * m + j] = v[r * p + j];
    memcpy(val, ev, (size_t)m * sizeof *val);
    rc = 0;
done:
    free(v); free(cv); free(h); free(e); free(ev); free(prev); free(tmp); free(vf); free(cvf);
    return rc;
}

int eval_pca(float *out, double *var, const float *x, size_t n, int d, int m, char *err, size_t errlen)
{
    if (n < 1 || d < 1) {
        errmsg_set(err, errlen, "PCA of %zu points with %d features: nothing to do", n, d);
        return -1;
    }
    int mk = m < d ? m : d;
    float *xc = calloc(n * (size_t)d, sizeof *xc), *cov = malloc((size_t)d * d * sizeof *cov);
    float *axf = malloc((size_t)d * (mk > 0 ? mk : 1) * sizeof *axf);
    double *mean = calloc((size_t)d, sizeof *mean), *val = malloc((size_t)(mk > 0 ? mk : 1) * sizeof *val);
    double *axes = malloc((size_t)d * (mk > 0 ? mk : 1) * sizeof *axes);
    int rc = -1;
    if (!xc || !cov || !axf || !mean || !val || !axes) {
        errmsg_set(err, errlen, "PCA: out of memory (%zu x %d features)", n, d);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            mean[j] += x[i * d + j];
    for (int j = 0; j < d; j++)
        mean[j] /= n ? (double)n : 1.0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            xc[i * d + j] = (float)(x[i * d + j] - mean[j]);
    nn_sgemm(1, 0, d, d, (int)n, 1.0f / (float)(n ? n : 1), xc, d, xc, d, 0.0f, cov, d);
    if (mk > 0 && top_eigen(cov, d, mk, val, axes)) {
        errmsg_set(err, errlen, "PCA: out of memory for the eigenvectors (%d features)", d);
        goto done;
    }
    for (int j = 0; j < mk; j++) {                 /* sign: the largest component positive */
        int arg = 0;
        for (int r = 1; r < d; r++)
            if (fabs(axes[r * mk + j]) > fabs(axes[arg * mk + j]))
                arg = r;
        double sign = axes[arg * mk + j] < 0 ? -1.0 : 1.0;
        for (int r = 0; r < d; r++)
            axf[r * mk + j] = (float)(sign * axes[r * mk + j]);
    }
    if (mk > 0 && m == mk)
        nn_sgemm(0, 0, (int)n, mk, d, 1.0f, xc, d, axf, mk, 0.0f, out, mk);
    else {
        for (size_t i = 0; i < n; i++)
            for (int j = 0; j < m; j++) {
                double s = 0.0;
                for (int r = 0; j < mk && r < d; r++)
                    s += (double)xc[i * d + r] * axf[r * mk + j];
                out[i * m + j] = (float)s;
            }
    }
    if (var)
        for (int j = 0; j < m; j++)
            var[j] = j < mk ? val[j] : 0.0;
    rc = 0;
done:
    free(xc); free(cov); free(axf); free(mean); free(val); free(axes);
    return rc;
}

/* ---------------------------------------------------------------- t-SNE */

typedef struct {
    float *p;                    /* (n, n): squared distances in, affinities P(j|i) out */
    size_t n;
    double log_perp;
} affinity_job;

/* Each row's precision by binary search so that the entropy of P(.|i) is log(perplexity). */
static void affinity_rows(void *arg, size_t begin, size_t end)
{
    affinity_job *job = arg;
    size_t n = job->n;
    for (size_t i = begin; i < end; i++) {
        float *row = job->p + i * n;
        double beta = 1.0, lo = 0.0, hi = INFINITY, dmin = INFINITY;
        for (size_t j = 0; j < n; j++)
            if (j != i && row[j] < dmin)
                dmin = row[j];
        if (!isfinite(dmin))
            dmin = 0.0;
        double sum = 0.0;
        for (int step = 0; step < TSNE_BETA_STEPS; step++) {
            double sdp = 0.0;
            sum = 0.0;
            for (size_t j = 0; j < n; j++) {
                if (j == i)
                    continue;
                double dd = row[j] - dmin;            /* shifted: exp stays in range */
                double e = exp(-beta * dd);
                sum += e;
                sdp += dd * e;
            }
            double h = sum > 0 ? log(sum) + beta * sdp / sum : 0.0;
            double diff = h - job->log_perp;
            if (fabs(diff) < TSNE_ENTROPY_TOL)
                break;
            if (diff > 0) {                            /* too flat: sharpen */
                lo = beta;
                beta = isfinite(hi) ? 0.5 * (beta + hi) : 2.0 * beta;
            } else {
                hi = beta;
                beta = 0.5 * (beta + lo);
            }
        }
        for (size_t j = 0; j < n; j++)
            row[j] = j == i || sum <= 0 ? 0.0f : (float)(exp(-beta * (row[j] - dmin)) / sum);
    }
}

typedef struct {
    const float *p;              /* (n, n) symmetric joint affinities */
    const float *yx, *yy;        /* (n) map coordinates */
    size_t n;
    double *zrow;                /* (n) sum over j != i of 1 / (1 + |yi - yj|^2) */
    double *attr, *rep;          /* (n, 2) sum_j p_ij q~_ij (yi - yj), sum_j q~_ij^2 (yi - yj) */
} grad_job;

/* Each row's sums run in LANES interleaved partial sums, then added in lane
 * order: the compiler can keep them in vector registers, and the result is
 * the same bit for bit whatever the vector width. The AVX2 clone (no FMA: the
 * same roundings as the default one) is about twice as fast where the CPU has it. */
#define LANES 8

__attribute__((target_clones("avx2", "default")))
static void gradient_rows(void *arg, size_t begin, size_t end)
{
    grad_job *g = arg;
    size_t n = g->n;
    for (size_t i = begin; i < end; i++) {
        const float *prow = g->p + i * n;
        float xi = g->yx[i], yi = g->yy[i];
        float z[LANES] = { 0 }, ax[LANES] = { 0 }, ay[LANES] = { 0 }, rx[LANES] = { 0 }, ry[LANES] = { 0 };
        size_t j = 0;
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float dx = xi - g->yx[j + l], dy = yi - g->yy[j + l];
                float q = 1.0f / (1.0f + dx * dx + dy * dy);
                float pq = prow[j + l] * q, qq = q * q;
                z[l] += q;
                ax[l] += pq * dx; ay[l] += pq * dy;
                rx[l] += qq * dx; ry[l] += qq * dy;
            }
        for (int l = 0; j < n; j++, l++) {
            float dx = xi - g->yx[j], dy = yi - g->yy[j];
            float q = 1.0f / (1.0f + dx * dx + dy * dy);
            float pq = prow[j] * q, qq = q * q;
            z[l] += q;
            ax[l] += pq * dx; ay[l] += pq * dy;
            rx[l] += qq * dx; ry[l] += qq * dy;
        }
        double sz = -1.0, sax = 0, say = 0, srx = 0, sry = 0;   /* -1: the point itself */
        for (int l = 0; l < LANES; l++) {
            sz += z[l]; sax += ax[l]; say += ay[l]; srx += rx[l]; sry += ry[l];
        }
        g->zrow[i] = sz;
        g->attr[2 * i] = sax; g->attr[2 * i + 1] = say;
        g->rep[2 * i] = srx; g->rep[2 * i + 1] = sry;
    }
}

typedef struct {
    float *d;                    /* (n, n) */
    const float *sq;             /* (n) squared norms */
    size_t n;
} dist_job;

static void dist_rows(void *arg, size_t begin, size_t end)
{
    dist_job *job = arg;
    for (size_t i = begin; i < end; i++) {
        float *row = job->d + i * job->n;
        for (size_t j = 0; j < job->n; j++) {
            float v = job->sq[i] + job->sq[j] - 2.0f * row[j];
            row[j] = j == i || v < 0.0f ? 0.0f : v;
        }
    }
}

int eval_tsne(float *y, const float *x, size_t n, int d, const eval_tsne_opts *o, char *err, size_t errlen)
{
    if (n < 2) {
        errmsg_set(err, errlen, "t-SNE needs at least 2 points, got %zu", n);
        return -1;
    }
    float *p = malloc(n * n * sizeof *p), *sq = malloc(n * sizeof *sq);
    float *yx = malloc(n * sizeof *yx), *yy = malloc(n * sizeof *yy);
    double *ym = malloc(2 * n * sizeof *ym), *upd = calloc(2 * n, sizeof *upd), *gain = malloc(2 * n * sizeof *gain);
    double *zrow = malloc(n * sizeof *zrow), *attr = malloc(2 * n * sizeof *attr), *rep = malloc(2 * n * sizeof *rep);
    int rc = -1;
    if (!p || !sq || !yx || !yy || !ym || !upd || !gain || !zrow || !attr || !rep) {
        errmsg_set(err, errlen, "t-SNE: out of memory for %zu points (%zu MB of affinities)", n,
                   n * n * sizeof *p >> 20);
        goto done;
    }
    /* squared distances, then conditional affinities, then the symmetric joint ones */
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < d; j++)
            s += (double)x[i * d + j] * x[i * d + j];
        sq[i] = (float)s;
    }
    nn_sgemm(0, 1, (int)n, (int)n, d, 1.0f, x, d, x, d, 0.0f, p, (int)n);
    dist_job dj = { p, sq, n };
    nn_parallel_for(n, ROW_GRAIN, dist_rows, &dj);
    double perp = o->perplexity < (double)(n - 1) / 3.0 ? o->perplexity : (double)(n - 1) / 3.0;
    if (perp < 1.0)
        perp = 1.0;
    affinity_job aj = { p, n, log(perp) };
    nn_parallel_for(n, ROW_GRAIN, affinity_rows, &aj);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            float v = (p[i * n + j] + p[j * n + i]) / (2.0f * (float)n);
            if (v < TSNE_P_MIN)
                v = TSNE_P_MIN;
            p[i * n + j] = p[j * n + i] = v;
        }
    for (size_t i = 0; i < n; i++)
        p[i * n + i] = 0.0f;

    uint64_t rng = o->seed ^ 0x75e5eedull;
    for (size_t i = 0; i < 2 * n; i++) {
        ym[i] = TSNE_START_STD * gauss(&rng);
        gain[i] = 1.0;
    }
    double rate = (double)n / o->exaggeration / 4.0;
    if (rate < TSNE_MIN_RATE)
        rate = TSNE_MIN_RATE;
    grad_job gj = { p, yx, yy, n, zrow, attr, rep };
    for (int it = 0; it < o->iters; it++) {
        if (o->stop && *o->stop) {
            errmsg_set(err, errlen, "t-SNE: stopped");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            yx[i] = (float)ym[2 * i];
            yy[i] = (float)ym[2 * i + 1];
        }
        nn_parallel_for(n, ROW_GRAIN, gradient_rows, &gj);
        double z = 0.0;
        for (size_t i = 0; i < n; i++)
            z += zrow[i];
        if (!(z > 0.0))
            z = DBL_MIN;
        double exag = it < o->exag_iters ? o->exaggeration : 1.0;
        double mom = it < o->exag_iters ? TSNE_MOMENTUM0 : TSNE_MOMENTUM1;
        double cx = 0.0, cy = 0.0;
        for (size_t i = 0; i < 2 * n; i++) {
            double grad = 4.0 * (exag * attr[i] - rep[i] / z);
            gain[i] = (grad > 0) != (upd[i] > 0) ? gain[i] + TSNE_GAIN_UP : gain[i] * TSNE_GAIN_DOWN;
            if (gain[i] < TSNE_GAIN_MIN)
                gain[i] = TSNE_GAIN_MIN;
            upd[i] = mom * upd[i] - rate * gain[i] * grad;
            ym[i] += upd[i];
            if (i & 1) cy += ym[i]; else cx += ym[i];
        }
        cx /= (double)n;
        cy /= (double)n;
        for (size_t i = 0; i < n; i++) {
            ym[2 * i] -= cx;
            ym[2 * i + 1] -= cy;
        }
    }
    for (size_t i = 0; i < 2 * n; i++)
        y[i] = (float)ym[i];
    rc = 0;
done:
    free(p); free(sq); free(yx); free(yy); free(ym); free(upd); free(gain); free(zrow); free(attr); free(rep);
    return rc;
}

/* ------------------------------------------------------- purity, silhouette */

typedef struct {
    const float *y;
    const int32_t *labels;
    size_t n;
    int dim, k;
    double *share;               /* (n) */
} purity_job;

static void purity_rows(void *arg, size_t begin, size_t end)
{
    purity_job *job = arg;
    int k = job->k;
    float *best = malloc((size_t)k * sizeof *best);
    size_t *arg_best = malloc((size_t)k * sizeof *arg_best);
    for (size_t i = begin; i < end && best && arg_best; i++) {
        int have = 0;
        const float *yi = job->y + i * job->dim;
        for (size_t j = 0; j < job->n; j++) {
            if (j == i)
                continue;
            const float *yj = job->y + j * job->dim;
            float dd = 0.0f;
            for (int c = 0; c < job->dim; c++)
                dd += (yi[c] - yj[c]) * (yi[c] - yj[c]);
            if (have == k && dd >= best[k - 1])
                continue;
            int pos = have < k ? have++ : k - 1;       /* insertion: j comes after equal ones */
            while (pos > 0 && best[pos - 1] > dd) {
                best[pos] = best[pos - 1];
                arg_best[pos] = arg_best[pos - 1];
                pos--;
            }
            best[pos] = dd;
            arg_best[pos] = j;
        }
        int same = 0;
        for (int m = 0; m < have; m++)
            same += job->labels[arg_best[m]] == job->labels[i];
        job->share[i] = have ? (double)same / have : 0.0;
    }
    free(best);
    free(arg_best);
}

double eval_knn_purity(const float *y, const int32_t *labels, size_t n, int dim, int k)
{
    if (n < 2 || k < 1)
        return NAN;
    double *share = malloc(n * sizeof *share);
    if (!share)
        return NAN;
    purity_job job = { y, labels, n, dim, k, share };
    nn_parallel_for(n, ROW_GRAIN, purity_rows, &job);
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += share[i];
    free(share);
    return s / (double)n;
}

typedef struct {
    const float *g;              /* (rows, n) dot products of the block's rows with every row */
    const float *sq;
    const int32_t *labels;
    const size_t *count;         /* (k) points per class */
    size_t n, first;
    int k;
    double *sums;                /* (rows, k) scratch */
    double *s;                   /* (n) silhouettes */
} sil_job;

static void silhouette_rows(void *arg, size_t begin, size_t end)
{
    sil_job *job = arg;
    for (size_t r = begin; r < end; r++) {
        size_t i = job->first + r;
        double *sums = job->sums + r * job->k;
        memset(sums, 0, (size_t)job->k * sizeof *sums);
        const float *g = job->g + r * job->n;
        for (size_t j = 0; j < job->n; j++) {
            if (j == i)
                continue;
            double v = (double)job->sq[i] + job->sq[j] - 2.0 * g[j];
            sums[job->labels[j]] += v > 0 ? sqrt(v) : 0.0;
        }
        int own = job->labels[i];
        if (job->count[own] < 2) {
            job->s[i] = 0.0;
            continue;
        }
        double a = sums[own] / (double)(job->count[own] - 1), b = INFINITY;
        for (int c = 0; c < job->k; c++)
            if (c != own && job->count[c] > 0 && sums[c] / (double)job->count[c] < b)
                b = sums[c] / (double)job->count[c];
        double mx = a > b ? a : b;
        job->s[i] = mx > 0 ? (b - a) / mx : 0.0;
    }
}

double eval_silhouette(const float *x, const int32_t *labels, size_t n, int d, int k)
{
    size_t *count = calloc((size_t)(k > 0 ? k : 1), sizeof *count);
    float *sq = malloc((n ? n : 1) * sizeof *sq), *g = malloc((size_t)SIL_BLOCK * (n ? n : 1) * sizeof *g);
    double *sums = malloc((size_t)SIL_BLOCK * (k > 0 ? k : 1) * sizeof *sums), *s = malloc((n ? n : 1) * sizeof *s);
    double result = NAN;
    if (!count || !sq || !g || !sums || !s)
        goto done;
    int classes = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < k && count[labels[i]]++ == 0)
            classes++;
    if (classes < 2)
        goto done;
    for (size_t i = 0; i < n; i++) {
        double v = 0.0;
        for (int j = 0; j < d; j++)
            v += (double)x[i * d + j] * x[i * d + j];
        sq[i] = (float)v;
    }
    for (size_t first = 0; first < n; first += SIL_BLOCK) {
        size_t rows = n - first < SIL_BLOCK ? n - first : SIL_BLOCK;
        nn_sgemm(0, 1, (int)rows, (int)n, d, 1.0f, x + first * d, d, x, d, 0.0f, g, (int)n);
        sil_job job = { g, sq, labels, count, n, first, k, sums, s };
        nn_parallel_for(rows, 1, silhouette_rows, &job);
    }
    result = 0.0;
    for (size_t i = 0; i < n; i++)
        result += s[i];
    result /= (double)n;
done:
    free(count); free(sq); free(g); free(sums); free(s);
    return result;
}
