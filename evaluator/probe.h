/* evaluator/probe: the linear probe. Multinomial logistic regression on
 * standardised features, L2-regularised, fitted with L-BFGS; the
 * regularisation strength is chosen on a class-balanced validation split of
 * the training items, then the model is refitted on all of them and scored on
 * the test items (top-1, top-5).
 *
 * Objective, for weights W (d, k) and biases b (k):
 *   f(W, b) = mean_i -log softmax(x_i W + b)[y_i] + lambda / 2 ||W||^2
 * (biases are not regularised). One evaluation of f and its gradient is one
 * pass over x: blocks of rows, two float products (nn_sgemm) each, spread
 * over the threads.
 *
 * Where the time goes is the number of such passes, so:
 * - L-BFGS is preconditioned by the features' second moment: its starting
 *   inverse Hessian is gamma (G + lambda I)^-1 on the weights, G = x^T x / n
 *   (from at most 20,000 rows, Cholesky-factored once per strength), which
 *   undoes the correlations between features (raw pixels: neighbours) that
 *   make plain L-BFGS crawl;
 * - a fit stops when f has decreased by less than ftol (relative) per
 *   iteration over the last 10 iterations, or the gradient vanishes;
 *   validation fits use the looser val_ftol on big problems (they only
 *   have to rank the strengths);
 * - the strengths, strongest first and each fit warm-started from the
 *   previous one, stop once two in a row fall below the best validation
 *   accuracy; the refit starts from the chosen validation model.
 */
#ifndef EVALUATOR_PROBE_H
#define EVALUATOR_PROBE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_PROBE_MAX_LAMBDAS 16
#define EVAL_PROBE_FEW_PER_CLASS 10     /* below this many labels per class, no validation split ... */
#define EVAL_PROBE_FIXED_LAMBDA  1e-2   /* ... and this strength */

typedef struct {
    int max_iter;                   /* L-BFGS iterations of the final fit */
    double grad_tol;                /* converged when max |gradient| falls below */
    double ftol;                    /* ... or the mean relative decrease of f per iteration over
                                       the last 10 iterations does */
    double val_ftol;                /* ftol of the validation fits */
    double val_iter_share;          /* validation fits get this share of max_iter */
    int grid_patience;              /* the strengths (strongest first) stop after this many in a
                                       row fall below the best validation accuracy (0: try all) */
    int history;                    /* L-BFGS memory (pairs kept) */
    double lambdas[EVAL_PROBE_MAX_LAMBDAS];  /* candidate L2 strengths */
    int n_lambdas;
    double val_fraction;            /* of the training items, for choosing lambda */
    uint64_t seed;                  /* of the validation split */
    int precondition;               /* L-BFGS preconditioned by the features' second moment */
    atomic_int *stop;    /* when not NULL and raised, fitting stops with an error */
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

/* With fewer than EVAL_PROBE_FEW_PER_CLASS x k training items there is too
 * little to validate on: o's strengths become EVAL_PROBE_FIXED_LAMBDA alone.
 * Returns 1 when so, else 0 (o unchanged). */
int eval_probe_few_labels(eval_probe_opts *o, size_t n, int k);

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
 * x (n, d) standardised; gram (d, d) the preconditioner's second moment
 * (eval_feature_gram), or NULL for plain L-BFGS. iters, converged, loss may
 * be NULL. 0 or -1. */
int eval_logreg_fit(double *w, const float *x, const int32_t *y, size_t n, int d, int k, double lambda,
                    const double *gram, const eval_probe_opts *o, int *iters, int *converged, double *loss,
                    char *err, size_t errlen);
/* gram (d, d) = x^T x / m over m evenly spaced rows of x (n, d) (all when
 * max_rows is 0 or n <= max_rows). 0, or -1 (out of memory, no rows, or
 * stop, when not NULL, was raised). */
int eval_feature_gram(double *gram, const float *x, size_t n, int d, size_t max_rows,
                      atomic_int *stop);
/* Top-1 and top-5 accuracy of w on x (n, d). 0 or -1 (out of memory). */
int eval_logreg_score(const double *w, const float *x, const int32_t *y, size_t n, int d, int k,
                      double *top1, double *top5);

#endif
