/* evaluator/probe: the linear probe. Multinomial logistic regression on
 * standardised features, L2-regularised, fitted to convergence with L-BFGS;
 * the regularisation strength is chosen on a class-balanced validation split
 * of the training items, then the model is refitted on all of them and
 * scored on the test items (top-1, top-5).
 *
 * Objective, for weights W (d, k) and biases b (k):
 *   f(W, b) = mean_i -log softmax(x_i W + b)[y_i] + lambda / 2 ||W||^2
 * (biases are not regularised). The matrix products run on nn_sgemm.
 */
#ifndef EVALUATOR_PROBE_H
#define EVALUATOR_PROBE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_PROBE_MAX_LAMBDAS 16

typedef struct {
    int max_iter;                   /* L-BFGS iterations per fit */
    double grad_tol;                /* converged when max |gradient| falls below */
    double ftol;                    /* ... or the relative decrease of f per iteration does */
    int history;                    /* L-BFGS memory (pairs kept) */
    double lambdas[EVAL_PROBE_MAX_LAMBDAS];  /* candidate L2 strengths */
    int n_lambdas;
    double val_fraction;            /* of the training items, for choosing lambda */
    uint64_t seed;                  /* of the validation split */
    volatile sig_atomic_t *stop;    /* when not NULL and raised, fitting stops with an error */
} eval_probe_opts;

typedef struct {
    double top1, top5;              /* test accuracy, 0..1 */
    double lambda;                  /* chosen strength */
    double val_top1;                /* its validation accuracy */
    double loss;                    /* final training objective */
    int iters;                      /* L-BFGS iterations of the final fit */
    int converged;                  /* the final fit met a tolerance before max_iter */
    size_t n_train, n_val;          /* items in the validation fit (train part, val part) */
} eval_probe_result;

void eval_probe_defaults(eval_probe_opts *o);

/* Runs the whole probe. Training items: the rows idx[0..ntr) of xtr (all of
 * the first ntr rows when idx is NULL); test items: xte (nte, d). Labels in
 * 0..k-1. The inputs are not modified. 0, or -1 with err set. */
int eval_probe(const float *xtr, const int32_t *ytr, const size_t *idx, size_t ntr,
               const float *xte, const int32_t *yte, size_t nte, int d, int k,
               const eval_probe_opts *o, eval_probe_result *r, char *err, size_t errlen);

/* ---- the pieces, for tests ---- */

/* mean (d) and inv_std (d) of the given rows; a constant column gets inv_std 0. */
void eval_standardize_fit(double *mean, double *inv_std, const float *x, const size_t *idx, size_t n, int d);
/* dst (n, d) = (x[idx[i]] - mean) * inv_std. */
void eval_standardize_apply(float *dst, const float *x, const size_t *idx, size_t n, int d,
                            const double *mean, const double *inv_std);

/* Fits w ((d + 1) x k: W row-major then b), starting from its content.
 * x (n, d) standardised. iters, converged, loss may be NULL. 0 or -1. */
int eval_logreg_fit(double *w, const float *x, const int32_t *y, size_t n, int d, int k, double lambda,
                    const eval_probe_opts *o, int *iters, int *converged, double *loss,
                    char *err, size_t errlen);
/* Top-1 and top-5 accuracy of w on x (n, d). 0 or -1 (out of memory). */
int eval_logreg_score(const double *w, const float *x, const int32_t *y, size_t n, int d, int k,
                      double *top1, double *top5);

#endif
