/* trainer/config: the run's training settings in one struct. Read once from
 * the command line, recorded in every checkpoint's state file and restored
 * from it on resume, where the command line may repeat them but not change
 * what the model was built with.
 */
#ifndef TRAINER_CONFIG_H
#define TRAINER_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/optim.h"
#include "trainer/options.h"

#define TRAINER_ARCH_MAX 4096   /* a preset name or a description file's path */

typedef struct {
    train_method_t method;
    char arch[TRAINER_ARCH_MAX];    /* "resnet-mini", "conv4" or a description file, as given */
    int width;                      /* a preset's first-stage channels */
    uint32_t batch;                 /* images per step */
    nn_opt_kind optimizer;
    double lr;                      /* peak learning rate, after the batch scaling */
    double weight_decay, momentum, tau;
    int decoupled;                  /* simclr: DCL instead of NT-Xent ("loss": "dcl") */
    double ema;                     /* the weights' moving average's decay, 0 = none */
    uint32_t classes;               /* supervised: labels 0..classes-1 (not recorded: a resumed
                                       run takes its network head's width) */
    long warmup_steps;              /* -1: the default share of the total (trainer/schedule.h) */
    double warmup_epochs;           /* > 0: given in epochs, not yet turned into steps (not recorded) */
    int warmup_auto;                /* the default share of a total still being planned (not recorded) */
    double epochs;                  /* 0: the run is counted in steps */
    long steps;                     /* the steps asked for, 0 with epochs (recorded as total_steps) */
    double minutes;                 /* > 0: a time budget; total_steps is re-planned at each step */
    long total_steps;               /* of the whole run; 0 = not known yet */
    uint64_t dataset_size;          /* images per epoch; 0 = not known yet */
    uint64_t seed;                  /* parameter initialisation */
    int sync_bn;                    /* data-parallel: synchronised batch norm (--sync-bn) */
} trainer_config_t;

/* The settings the command line gives (its defaults filled in). */
void trainer_config_from_options(trainer_config_t *c, const trainer_options_t *o);

/* Adds the recorded settings to the state object j, under the field names
 * of the state format (trainer/rundir.h). 0, or -1 out of memory. */
int trainer_config_to_json(const trainer_config_t *c, json_t *j);

/* Reads them back from a state object. 0, or -1 with err (a missing field,
 * an unknown method or optimizer, a value out of range). */
int trainer_config_from_json(trainer_config_t *c, json_t *j, char *err, size_t errlen);

/* Turns c (from the command line o) into the resumed run's settings `saved`:
 * method, optimizer, batch, network and width must be the same when given
 * (-1 with err otherwise); a different lr, weight decay, momentum, tau or
 * warm-up is logged and the run's kept; --steps / --epochs given again set
 * a new total (extending the run); --dataset-size given wins. */
int trainer_config_resume(trainer_config_t *c, const trainer_config_t *saved, const trainer_options_t *o, char *err,
                          size_t errlen);

/* A 64-bit unsigned value of the state file: a string of digits in base 10
 * or 16, since JSON numbers are not exact beyond 2^53. 0, or -1 when s is
 * not one. */
int trainer_config_parse_u64(const char *s, int base, uint64_t *out);

/* 1 when arch names a preset (resnet-mini, conv4), 0 for a description file. */
int trainer_arch_is_preset(const char *arch);

#endif
