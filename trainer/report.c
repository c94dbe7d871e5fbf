/* trainer/report: metrics lines, epoch records, progress line, summary. */
#include "trainer/report.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#define SUMMARY_UNKNOWN (-1.0)   /* the summary's loss when this process trained no step */

void report_init(report_t *r, uint32_t batch, int quiet, double seconds_before)
{
    memset(r, 0, sizeof *r);
    r->batch = batch;
    r->quiet = quiet;
    r->seconds_before = seconds_before;
}

void report_close(report_t *r)
{
    if (r->metrics)
        fclose(r->metrics);
    r->metrics = NULL;
}

double report_start(report_t *r, long step, long total_steps)
{
    r->run_start = console_now();
    progress_start(&r->progress, "images", (uint64_t)total_steps * r->batch);
    r->progress.last_done = (uint64_t)step * r->batch;
    return r->run_start;
}

void report_total(report_t *r, long total_steps)
{
    r->progress.total = (uint64_t)total_steps * r->batch;
}

void report_finish(report_t *r)
{
    if (!r->quiet)
        progress_end(&r->progress);
}

double report_seconds(const report_t *r)
{
    return r->seconds_before + (r->run_start > 0 ? console_now() - r->run_start : 0);
}

double report_images_per_s(const report_t *r)
{
    return r->sum_period > 0 ? (double)r->timed_steps * r->batch / r->sum_period : 0;
}

double report_wait_share(const report_t *r)
{
    return r->sum_period > 0 ? r->sum_wait / r->sum_period : 0;
}

double report_accuracy(const report_t *r)
{
    if (r->acc_count == 0)
        return NAN;
    double sum = 0;
    for (int i = 0; i < r->acc_count; i++)
        sum += r->acc_ring[i];
    return sum / r->acc_count;
}

static void note_accuracy(report_t *r, float acc)
{
    if (!isfinite(acc))
        return;
    r->acc_ring[r->acc_next] = acc;
    r->acc_next = (r->acc_next + 1) % REPORT_ACC_WINDOW;
    if (r->acc_count < REPORT_ACC_WINDOW)
        r->acc_count++;
}

static void write_metrics(report_t *r, const report_step_t *s)
{
    if (!r->metrics)
        return;
    json_t *j = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "step", (json_int_t)s->step,
                          "epoch", s->epoch, "loss", (double)s->loss, "lr", (double)s->lr,
                          "images_per_s", s->period > 0 ? r->batch / s->period : 0.0,
                          "data_wait", s->period > 0 ? s->wait / s->period : 0.0,
                          "time", report_seconds(r));
    if (!j)
        return;
    if (isfinite(s->accuracy))
        json_object_set_new(j, "accuracy", json_real((double)s->accuracy));   /* this batch, before the update */
    if (json_dumpf(j, r->metrics, JSON_COMPACT | JSON_REAL_PRECISION(6)) == 0)
        fputc('\n', r->metrics);
    json_decref(j);
}

static void show_progress(report_t *r, const report_step_t *s)
{
    if (r->quiet)
        return;
    char extra[160], total[32] = "";
    if (s->total_steps)
        snprintf(total, sizeof total, "/%ld", s->total_steps);
    char acc[32] = "";
    if (r->acc_count)
        snprintf(acc, sizeof acc, ", acc %.1f%%", 100 * report_accuracy(r));
    snprintf(extra, sizeof extra, "step %ld%s, epoch %.2f, loss %.4f%s, data wait %.1f%%", s->step, total,
             s->epoch, (double)s->loss, acc, 100 * report_wait_share(r));
    progress_update(&r->progress, (uint64_t)s->step * r->batch, extra);
}

void report_step(report_t *r, const report_step_t *s)
{
    r->last_loss = s->loss;
    note_accuracy(r, s->accuracy);
    r->sum_period += s->period;
    r->sum_wait += s->wait;
    r->timed_steps++;
    write_metrics(r, s);
    show_progress(r, s);
}

void report_epochs(report_t *r, feed_t *feed, long step, const trainer_config_t *c, int all)
{
    epochs_record_t e;
    while (feed_epoch_record(feed, all, &e)) {
        json_t *j = json_pack("{s:I, s:f, s:s, s:I, s:I, s:I, s:I, s:b}", "step", (json_int_t)step,
                              "time", report_seconds(r), "record", "epoch", "epoch", (json_int_t)e.epoch,
                              "distinct", (json_int_t)e.distinct, "duplicates", (json_int_t)e.duplicates,
                              "expected", (json_int_t)e.expected, "complete", e.complete);
        if (j && c->method == TRAIN_SUPERVISED)
            json_object_set_new(j, "skipped", json_integer((json_int_t)e.skipped));
        if (j && json_dumpf(j, r->metrics, JSON_COMPACT) == 0)
            fputc('\n', r->metrics);
        json_decref(j);
        char skipped[80] = "";
        if (e.skipped)
            snprintf(skipped, sizeof skipped, ", %" PRIu64 " skipped (no label in 0..%u)", e.skipped,
                     c->classes - 1);
        if (!r->quiet || !e.complete)
            console_log("epoch %u %s: %" PRIu64 " distinct samples trained%s%s, %" PRIu64 " duplicate(s) dropped",
                        e.epoch, e.complete ? "complete" : "open at the end", e.distinct,
                        e.expected ? "" : " (its end was not seen)", skipped, e.duplicates);
    }
}

void report_summary(report_t *r, const char *end, long step, feed_t *feed, const trainer_config_t *c,
                    const char *checkpoint, double seconds)
{
    feed_stats_t fs;
    feed_stats(feed, &fs);
    char skipped[80] = "", acc[80] = "";
    if (c->method == TRAIN_SUPERVISED)
        snprintf(skipped, sizeof skipped, ", %" PRIu64 " samples skipped for their label", fs.skipped);
    if (r->acc_count)
        snprintf(acc, sizeof acc, ", train accuracy %.1f%% (mean of the last %d steps)", 100 * report_accuracy(r),
                 r->acc_count);
    console_log("%s after %ld steps (%ld in this process, %.1f s): %.1f images/s, data wait %.1f%% "
                "of step time, %" PRIu64 " ViewBatches, %" PRIu64 " dropped, %" PRIu64 " duplicate samples%s; "
                "last loss %.4f%s; checkpoint %s",
                end, step, r->timed_steps, seconds, report_images_per_s(r), 100 * report_wait_share(r),
                fs.viewbatches, fs.dropped, fs.duplicates, skipped, (double)r->last_loss, acc,
                checkpoint[0] ? checkpoint : "none");
    json_t *j = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:s}", "end", end,
                          "step", (json_int_t)step, "steps_this_run", (json_int_t)r->timed_steps,
                          "loss", r->timed_steps ? (double)r->last_loss : SUMMARY_UNKNOWN,
                          "images_per_s", report_images_per_s(r), "data_wait", report_wait_share(r),
                          "viewbatches", (json_int_t)fs.viewbatches, "dropped", (json_int_t)fs.dropped,
                          "checkpoint", checkpoint);
    if (j && r->acc_count)
        json_object_set_new(j, "train_accuracy", json_real(report_accuracy(r)));
    if (j && c->method == TRAIN_SUPERVISED)
        json_object_set_new(j, "skipped", json_integer((json_int_t)fs.skipped));
    if (j && r->ranks > 1) {
        /* per step of this process: the price of data-parallel training */
        double steps = r->timed_steps > 0 ? (double)r->timed_steps : 1.0;
        json_object_set_new(j, "ranks", json_integer(r->ranks));
        json_object_set_new(j, "comm_s_per_step", json_real(r->comm_seconds / steps));
        json_object_set_new(j, "comm_bytes_per_step", json_real(r->comm_bytes / steps));
        console_log("%d ranks: %.4f s per step in collectives (%.1f%% of the step), %.2f MB sent per step by "
                    "rank 0", r->ranks, r->comm_seconds / steps,
                    r->sum_period > 0 ? 100 * r->comm_seconds / r->sum_period : 0.0, r->comm_bytes / steps / 1e6);
    }
    if (j) {
        json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(j);
    }
}
