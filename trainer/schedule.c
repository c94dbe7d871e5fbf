/* trainer/schedule: total steps, warm-up, learning rate at a step. */
#include "trainer/schedule.h"

#include <limits.h>
#include <math.h>

#include "nn/optim.h"

long schedule_total_steps(const trainer_config_t *c)
{
    if (c->minutes > 0)
        return c->total_steps;   /* schedule_budget plans it */
    if (c->steps > 0)
        return c->steps;
    if (!c->dataset_size)
        return 0;
    long n = (long)floor(c->epochs * (double)c->dataset_size / (double)c->batch);
    return n > 0 ? n : 1;
}

void schedule_plan(trainer_config_t *c)
{
    if (!c->total_steps)
        c->total_steps = schedule_total_steps(c);
    if (c->warmup_epochs > 0) {
        c->warmup_steps = (long)llround(c->warmup_epochs * (double)c->dataset_size / (double)c->batch);
        c->warmup_epochs = 0;
    } else if (c->warmup_steps < 0 && c->minutes > 0 && !c->total_steps) {
        c->warmup_auto = 1;   /* planned with the total by schedule_budget */
    } else if (c->warmup_steps < 0) {
        c->warmup_steps = c->total_steps > 0 ? (long)llround(TRAINER_WARMUP_SHARE * (double)c->total_steps) : 0;
    }
}

void schedule_budget(trainer_config_t *c, long step, double rate, double trained_s)
{
    double left = c->minutes * 60.0 - trained_s;
    double more = left > 0 && rate > 0 ? floor(left * rate) : 0;
    long total = step + (long)fmin(more, (double)(LONG_MAX / 4));
    c->total_steps = total > 0 ? total : 1;
    /* the warm-up only grows, and is fixed once it is over */
    if (c->warmup_auto && (c->warmup_steps < 0 || step <= c->warmup_steps)) {
        long w = (long)llround(TRAINER_WARMUP_SHARE * (double)c->total_steps);
        if (w > c->warmup_steps)
            c->warmup_steps = w;
    }
}

float schedule_lr(const trainer_config_t *c, long step)
{
    if (c->minutes > 0 && !c->total_steps)
        return 0.0f;   /* the first step of a time budget: no rate known yet */
    long total = c->total_steps > 0 ? c->total_steps : LONG_MAX;
    return nn_lr_schedule((float)c->lr, step, c->warmup_steps, total);
}
