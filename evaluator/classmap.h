/* evaluator/classmap: the class map of a checkpoint: 2-D maps (PCA, t-SNE)
 * of the test features of a seeded class-balanced subset, one dot per image
 * coloured by class, for the encoder and beside it the baselines (random
 * encoder, raw pixels), in one PNG; and numbers for "same class together":
 * the kNN purity of each map (k EVAL_PURITY_K) and the silhouette of the
 * features by class (Euclidean, on the standardised features).
 *
 * Each representation is standardised (as the probe sees it), projected on
 * its top EVAL_PCA_DIMS principal axes; the first two are the PCA map, all of
 * them are t-SNE's input (evaluator/embed.h).
 */
#ifndef EVALUATOR_CLASSMAP_H
#define EVALUATOR_CLASSMAP_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_CLASSMAP_MAX_REPS 4

typedef struct {
    const char *name;     /* for people: "random encoder" */
    const char *key;      /* in the record: "random_encoder" */
    const float *x;       /* (n, d) the features of the subset's images */
    int d;
} eval_classmap_rep;

/* Maps and numbers of reps[0..n_reps) over the n images with labels (0..k-1),
 * the PNG written at png (title on top; NULL: no picture). Returns a new
 * object: reps[0]'s numbers at the top ("tsne_knn_purity", "pca_knn_purity",
 * "silhouette"), the others' under their keys, plus "points", "k",
 * "perplexity", "silhouette_metric" and "seconds"; NULL with err (also when
 * *stop is raised). */
json_t *eval_classmap(const eval_classmap_rep *reps, int n_reps, const int32_t *labels, size_t n, int k,
                      uint64_t seed, atomic_int *stop, const char *png, const char *title,
                      char *err, size_t errlen);

#endif
