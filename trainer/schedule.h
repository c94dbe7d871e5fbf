/* trainer/schedule: the run's length and learning rate. The total is
 * --steps, or --epochs x dataset size / batch once the dataset size is
 * known; the warm-up is given in steps or epochs, or a share of the total;
 * the rate rises linearly over the warm-up, then follows a cosine to 0
 * (nn_lr_schedule). Until the total is known the rate stays at its peak
 * after the warm-up. A time budget (--minutes) plans the total from the
 * measured rate after every step (schedule_budget), and its default warm-up
 * with it until the warm-up is over.
 */
#ifndef TRAINER_SCHEDULE_H
#define TRAINER_SCHEDULE_H

#include "trainer/config.h"

/* Steps of the whole run for c's length and dataset size (0 = not known yet). */
long schedule_total_steps(const trainer_config_t *c);

/* Fills c's total (when 0) and turns its warm-up into steps (given in
 * epochs, or the default share of the total: 0 while the total is not known). */
void schedule_plan(trainer_config_t *c);

/* A time budget's plan after `step` steps: the total that uses the budget's
 * time left at `rate` steps per second, `trained_s` seconds of it spent (the
 * resumed runs' included); the default warm-up grows with it while it lasts. */
void schedule_budget(trainer_config_t *c, long step, double rate, double trained_s);

/* The learning rate of the step after `step` steps (0 for a time budget's
 * first step, before it has a plan). */
float schedule_lr(const trainer_config_t *c, long step);

#endif
