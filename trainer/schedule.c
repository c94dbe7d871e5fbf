/* trainer/schedule: total steps, warm-up, learning rate at a step. */
#include "trainer/schedule.h"

#include <limits.h>
#include <math.h>

#include "nn/optim.h"

long schedule_total_steps(const trainer_config_t *c)
{
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
    } else if (c->warmup_steps < 0) {
        c->warmup_steps = c->total_steps > 0 ? (long)llround(TRAINER_WARMUP_SHARE * (double)c->total_steps) : 0;
    }
}

float schedule_lr(const trainer_config_t *c, long step)
{
    long total = c->total_steps > 0 ? c->total_steps : LONG_MAX;
    return nn_lr_schedule((float)c->lr, step, c->warmup_steps, total);
}
