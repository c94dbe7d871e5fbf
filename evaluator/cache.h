/* evaluator/cache: baselines kept on disk, so that later runs and later
 * evaluator processes do not compute them again.
 *
 * A baseline (raw pixels, random encoder) depends only on the data, the
 * evaluation options and, for the random encoder, the network description and
 * its initialisation seed. The key of a baseline is a text that lists all of
 * these, one per line (the data as path, size and modification time), under
 * a first line naming the cache format and its version; the file is
 * <dir>/<kind>-<16 hex digits of the text's 64-bit FNV-1a hash>.json:
 *
 *   {"format":"sslpipe-baseline","version":1,"key":"<the text>","baseline":{...}}
 *
 * Reading checks the format, the version and the whole key text (a hash
 * collision is a miss, not a wrong result); writing goes to a temporary file
 * in the same folder, then rename(2), so a reader sees a whole file or none.
 */
#ifndef EVALUATOR_CACHE_H
#define EVALUATOR_CACHE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "evaluator/options.h"
#include "evaluator/probe.h"

#define EVAL_CACHE_FORMAT   "sslpipe-baseline"
#define EVAL_CACHE_VERSION  1          /* bump when a baseline's numbers would change */
#define EVAL_CACHE_SUBDIR   "sslpipe/baselines"
#define EVAL_CACHE_NAME_MAX 64

/* What a baseline depends on. */
typedef struct {
    const char *kind;              /* "raw_pixels" or "random_encoder" */
    const char *train_path;        /* the training images, as opened */
    const char *test_path;         /* the test images, or NULL: held out of the training data */
    size_t n_train, n_test;        /* items used (after --max-train/--max-test) */
    int c, h, w;                   /* the shape the images were decoded at */
    const eval_options *o;         /* format, subsets, seed, label fractions, kNN, alignment */
    const eval_probe_opts *probe;  /* the probe's settings (its stop flag is not part of it) */
    const char *desc;              /* network description (random encoder), else NULL */
    uint64_t init_seed;            /* its initialisation seed */
    uint64_t params_hash;          /* eval_cache_hash of the initialised parameters: a change in
                                      how nn initialises them is another key */
} eval_cache_inputs;

typedef struct {
    char *text;                    /* the key text (malloc'd) */
    uint64_t hash;                 /* FNV-1a of text */
    char name[EVAL_CACHE_NAME_MAX];  /* "<kind>-<hash>.json" */
} eval_cache_key;

/* 64-bit FNV-1a of n bytes. */
uint64_t eval_cache_hash(const void *data, size_t n);

/* Builds the key of in (stats the data paths). 0, or -1 with err (out of
 * memory). eval_cache_key_clear frees it. */
int eval_cache_key_make(eval_cache_key *key, const eval_cache_inputs *in, char *err, size_t errlen);
void eval_cache_key_clear(eval_cache_key *key);

/* The default folder: $XDG_CACHE_HOME/sslpipe/baselines, else
 * $HOME/.cache/sslpipe/baselines. 0, or -1 when neither variable is set. */
int eval_cache_default_dir(char *dir, size_t len);

/* The cached baseline of key in dir (a new reference), or NULL: *why is ""
 * when there is no entry, else says why the entry was not usable (it does
 * not parse, another format or version, another key). */
json_t *eval_cache_load(const char *dir, const eval_cache_key *key, char *why, size_t whylen);

/* Writes baseline under key in dir (created if missing), atomically. 0, or
 * -1 with err. */
int eval_cache_store(const char *dir, const eval_cache_key *key, const json_t *baseline,
                     char *err, size_t errlen);

/* mkdir -p: 0, or -1 with err. */
int eval_mkdir_p(const char *dir, char *err, size_t errlen);

#endif
