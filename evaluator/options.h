/* evaluator/options: the command line. */
#ifndef EVALUATOR_OPTIONS_H
#define EVALUATOR_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "evaluator/readout.h"

#define EVAL_FASHION_DIR        "/usr/share/datasets/fashion-mnist"
#define EVAL_FASHION_TRAIN      EVAL_FASHION_DIR "/train-images-idx3-ubyte.gz"
#define EVAL_FASHION_TEST       EVAL_FASHION_DIR "/t10k-images-idx3-ubyte.gz"
#define EVAL_MAX_FRACTIONS      8
#define EVAL_MAX_PATH           4096
#define EVAL_MAX_ATTENTION      64      /* images in the attention figure */
#define EVAL_MAX_FINETUNE       8       /* entries of --finetune, and of --finetune-per-class */

/* Fine-tuning with few labels (evaluator/finetune.h): which labeled subsets,
 * on which checkpoints. */
typedef struct {
    double fractions[EVAL_MAX_FINETUNE];   /* --finetune: shares of the training labels */
    int n_fractions;
    size_t per_class[EVAL_MAX_FINETUNE];   /* --finetune-per-class: labels per class */
    int n_per_class;
    int on_all;                    /* --finetune-on all; 0: only the final checkpoint */
    int epochs;                    /* --finetune-epochs: passes over the subset (at least a minimum of steps) */
} eval_finetune_options;

typedef struct {
    const char *bind;              /* PULL endpoint (server mode) */
    const char *control;           /* SUB endpoint for Control STOP, or NULL ("none", the default) */
    const char *curve;             /* --curve key folder, or NULL */
    const char *checkpoint;        /* one-shot mode when set */
    char out[EVAL_MAX_PATH];       /* folder of eval.jsonl and report/ */
    const char *train_data, *test_data;
    const char *format;            /* dataset format name ("auto") */
    double test_fraction;          /* held out of the training data when there is no test set */
    double fractions[EVAL_MAX_FRACTIONS];
    int n_fractions;
    size_t max_train, max_test;    /* 0: all */
    int batch;                     /* images per forward pass */
    int knn_k;
    double knn_t;
    size_t align_items;            /* images whose two views give alignment/uniformity */
    const char *align_recipe;      /* augmentation recipe of those views */
    eval_readout readout;          /* which activations the probe, kNN and metrics read */
    int views;                     /* --feature-views: each image's features are the mean over this many
                                    * views of it (EVAL_VIEWS_*) */
    int baselines;                 /* raw pixels and random encoder */
    char baseline_cache[EVAL_MAX_PATH];  /* folder of cached baselines, "" for none */
    int attention;                 /* images in the attention-map figure, 0: none */
    size_t classmap;               /* test images in the class map, 0: none */
    const char *compare[2];        /* --compare A B: two checkpoints' stage maps side by side */
    int report;                    /* report folder (plots, summary) */
    int probe_iters;
    int max_pending;               /* checkpoints kept waiting; older ones dropped */
    int after_stop_all;            /* after STOP: every waiting checkpoint, not just the newest */
    uint64_t seed;
    eval_finetune_options finetune;
} eval_options;

/* Parses argv into o. Returns 0 to run, 1 when --help was asked, -1 on a
 * usage error with err set (main prints it with cli_usage_error, exits 2). */
int eval_options_parse(eval_options *o, int argc, char **argv, char *err, size_t errlen);

void eval_usage(FILE *f);

#endif
