/* trainer/trainer: the training stage as one object. trainer_new checks the
 * options against what is already there (the run folder, the checkpoint to
 * resume, the network description) before any socket is opened;
 * trainer_run opens the run folder and the sockets, trains until the run
 * is done, the stream ends or a signal comes, writes the last checkpoint
 * and publishes STOP.
 *
 * The receive thread (trainer/feed.h) assembles the next batches while the
 * run computes; the time the run blocks waiting for one is the "data wait".
 *
 * Exactly once per epoch: the receive thread drops a sample whose (epoch,
 * index) it already took (trainer/epochs.h); the run acknowledges every
 * trained sample, and every dropped copy of a trained one, with Ack
 * messages (trainer/control.h), so that a loader run with --exactly-once
 * re-sends only what never arrived (a killed augmenter's samples).
 * Checkpoints keep which samples of the recent epochs the model holds; with
 * every heartbeat a Have message tells the loader that set, so that what a
 * killed trainer acknowledged after its last checkpoint is sent again to
 * the trainer resumed from it. metrics.jsonl gets one record per epoch
 * ({"record": "epoch", "distinct": ..., "duplicates": ...}) once the epoch
 * is complete, and for the epochs still open at the end of the run.
 * The run folder (--out) is described in trainer/rundir.h.
 */
#ifndef TRAINER_TRAINER_H
#define TRAINER_TRAINER_H

#include <stddef.h>

#include "dist/dist.h"
#include "trainer/options.h"

#define TRAINER_ERR_MAX 8192   /* an error message: room for two paths and a hint */

typedef struct trainer trainer_t;

/* Takes the run's settings from o, or from the checkpoint that o->resume
 * names, and checks the network; o must outlive the trainer. d is the run's
 * world (dist_new): in a world of N > 1 this process is one rank of a
 * data-parallel run (each binds its own dist_endpoint of --bind and takes
 * batch/N images a step; rank 0 alone writes the run folder, publishes
 * Control and tells the evaluator; every collective is called from the
 * thread that calls trainer_run). NULL with err
 * when the options do not suit (a run already in the folder, a setting that
 * differs from the resumed run's, a network that does not suit the method). */
trainer_t *trainer_new(const trainer_options_t *o, dist_t *d, char *err, size_t errlen);

/* Trains (see above), logging as it goes. 0 when the run ended well (done,
 * stopped by a signal, end of the stream), -1 on a runtime failure
 * (sockets, run folder, a diverged loss, a checkpoint that cannot be written). */
int trainer_run(trainer_t *t);

void trainer_destroy(trainer_t **self_p);

#endif
