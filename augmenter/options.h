/* augmenter/options: the augmenter's command line, parsed with cli_parse
 * (getopt_long; cli/cli.h conventions: errors name the flag, "none" disables
 * the control socket) into one struct, the recipe parsed and checked. */
#ifndef AUGMENTER_OPTIONS_H
#define AUGMENTER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "augment/augment.h"

#define DEFAULT_RECIPE    "simclr"
#define DEFAULT_SIZE      32
#define DEFAULT_CHANNELS  3
#define DEFAULT_BATCH     64
#define DEFAULT_SEED      1
#define DEFAULT_PULL_HWM  64      /* queued Samples per worker */
#define DEFAULT_PUSH_HWM  8       /* queued ViewBatches per worker */
#define MAX_WORKERS       256
#define MAX_HWM           1000000
/* The workers' restart policy (augmenter/supervisor.h); --help tells it. */
#define RESTART_DELAY_MS      500     /* a dead worker is replaced after this ... */
#define RESTART_DELAY_MAX_MS  4000    /* ... doubled for each recent death, up to this */
#define CRASH_LIMIT           5       /* this many worker deaths ... */
#define CRASH_WINDOW_S        60.0    /* ... within this long: give up */

typedef struct {
    const char *connect, *push;
    const char *control;      /* NULL ("none"): no control socket */
    const char *curve;        /* --curve key folder, or NULL */
    int workers;
    const char *recipe_text;
    aug_recipe_t recipe;
    aug_config_t cfg;
    uint32_t batch;
    int pull_hwm, push_hwm;
    const char *preview, *output;
    int quiet;
} augmenter_options_t;

/* Parses argv into o: 0, 1 when --help was asked, or -1 with err set (main
 * prints it with cli_parse_exit and exits 2). */
int augmenter_options_parse(augmenter_options_t *o, int argc, char **argv, char *err, size_t n);

void augmenter_usage(FILE *f);

#endif
