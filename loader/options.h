/* loader/options: the loader's command line, parsed with getopt_long into
 * one struct (cli/cli.h conventions: errors name the flag, "none" disables
 * the control socket). */
#ifndef LOADER_OPTIONS_H
#define LOADER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataset/dataset.h"

#define LOADER_DEFAULT_CACHE_MB   1024
#define LOADER_DEFAULT_HWM        1000
#define LOADER_DEFAULT_RESEND_S   3.0     /* --exactly-once: never re-send sooner than this */
#define LOADER_DEFAULT_QUEUE_MB   256
#define LOADER_DEFAULT_SEED       1
#define LOADER_MAX_THREADS        64
#define LOADER_DEFAULT_HOLD_OUT_SEED 1    /* the evaluator's default --seed */
#define LOADER_MAX_HOLD_OUT       0.9     /* the evaluator's largest --test-fraction */

typedef struct {
    const char *data;
    dataset_format_t format;
    dataset_decode_opts_t decode;
    size_t cache_mb;
    uint64_t seed;
    uint32_t epochs;          /* 0: until stopped */
    uint32_t start_epoch;     /* first epoch's number (its shuffle), when resuming */
    int count_only;           /* print the number of items served and exit */
    size_t limit;             /* 0: all */
    double hold_out;          /* 0: none; else the evaluator's held-out test fraction */
    uint64_t hold_out_seed;
    uint32_t shard_index, shard_count;
    const char *bind;
    const char *control;      /* NULL ("none"): no control channel */
    const char *curve;        /* --curve key folder, or NULL */
    int exactly_once;         /* track Acks, re-send what a dead worker held */
    double resend_after;      /* seconds unacknowledged before a re-send, at least */
    int hwm;
    size_t queue_mb;          /* bytes of Samples queued per augmenter connection, at most */
    int threads;
    int quiet;
} loader_options_t;

/* Parses argv. Returns 0 on success, 1 when --help was asked, -1 on a usage
 * error with err set (main prints it with cli_usage_error and exits 2). */
int loader_options_parse(loader_options_t *o, int argc, char **argv, char *err, size_t errlen);

void loader_usage(FILE *f);

#endif
