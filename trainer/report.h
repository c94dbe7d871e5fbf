/* trainer/report: what the run tells its user, and the running figures
 * behind it. metrics.jsonl gets one line per step ({"step", "epoch", "loss",
 * "lr", "images_per_s", "data_wait", "time"}, plus "accuracy" for rotnet and
 * supervised) and one per epoch record ({"record": "epoch", ...}, plus
 * "skipped" for supervised); the log gets the progress line, the epoch
 * records and the summary at the end, which also goes to stdout as one JSON
 * line. Throughput and data wait count from this process's first step.
 */
#ifndef TRAINER_REPORT_H
#define TRAINER_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "console/console.h"
#include "trainer/config.h"
#include "trainer/feed.h"

#define REPORT_ACC_WINDOW 20   /* the train accuracy: mean over this many last steps */

typedef struct {
    FILE *metrics;                  /* metrics.jsonl, owned (rundir_metrics_open); NULL: none (ranks > 0) */
    int ranks;                      /* data-parallel: the summary adds the time in collectives */
    double comm_seconds, comm_bytes;/* ... in all, and the bytes this rank sent in them */
    uint32_t batch;                 /* images per step */
    int quiet;                      /* no progress line, no log line per complete epoch */
    progress_t progress;
    double seconds_before;          /* training time of the runs this one resumes */
    double run_start;               /* console_now() at this process's first step; 0 before */
    double sum_wait, sum_period;    /* since then */
    long timed_steps;
    float last_loss;
    float acc_ring[REPORT_ACC_WINDOW];   /* batch train accuracy of the last steps (rotnet, supervised) */
    int acc_count, acc_next;
} report_t;

/* One finished step: its figures as the metrics line records them. */
typedef struct {
    long step, total_steps;         /* steps done (this one included); 0 = total not known */
    double epoch;                   /* where the run stands, in epochs */
    float loss, accuracy, lr;       /* accuracy NAN for simclr */
    double period, wait;            /* seconds of this step, of them waiting for the batch */
} report_step_t;

void report_init(report_t *r, uint32_t batch, int quiet, double seconds_before);
void report_close(report_t *r);

/* The first step is about to run: from now on time counts (returns now)
 * and the progress line runs. */
double report_start(report_t *r, long step, long total_steps);
/* Ends the progress line. */
void report_finish(report_t *r);
/* Training time of the run so far, the resumed runs' included. */
double report_seconds(const report_t *r);
double report_images_per_s(const report_t *r);
/* Share of the step time spent waiting for data. */
double report_wait_share(const report_t *r);
/* Mean batch train accuracy of the last REPORT_ACC_WINDOW steps; NAN when none. */
double report_accuracy(const report_t *r);

/* The total became known after the start (the dataset size was learnt). */
void report_total(report_t *r, long total_steps);

/* Records a step: its metrics line, the figures, the progress line. */
void report_step(report_t *r, const report_step_t *s);

/* Writes the per-epoch records of feed that are ready (with `all`, every
 * epoch still open too) into metrics.jsonl and the log. */
void report_epochs(report_t *r, feed_t *feed, long step, const trainer_config_t *c, int all);

/* The summary: the log line and the JSON line on stdout. `end` says why
 * the run ended; checkpoint is the last one written ("" for none). */
void report_summary(report_t *r, const char *end, long step, feed_t *feed, const trainer_config_t *c,
                    const char *checkpoint, double seconds);

#endif
