/* augmenter/augmenter: the augmentation stage as one object.
 * augmenter_new checks the recipe and settings once, before any worker
 * starts; augmenter_run forks the workers (augmenter/worker.h), replaces
 * those that die (augmenter/supervisor.h), drains them all after the
 * loader's end of stream, sends END_OF_STREAM downstream and logs the
 * summary. augmenter_preview is the --preview mode instead.
 */
#ifndef AUGMENTER_AUGMENTER_H
#define AUGMENTER_AUGMENTER_H

#include <stddef.h>

#include "augmenter/options.h"

typedef struct augmenter augmenter_t;

/* Checks o's recipe and settings (o must outlive the augmenter) and logs
 * them. NULL with *status (CLI_EXIT_USAGE: settings that do not go together,
 * CLI_EXIT_FAILED: out of memory) and err set. */
augmenter_t *augmenter_new(const augmenter_options_t *o, int *status, char *err, size_t errlen);

/* Runs the workers until the end of stream, a STOP or a signal, or until
 * too many die; the exit status (CLI_EXIT_OK, or CLI_EXIT_FAILED). */
int augmenter_run(augmenter_t *a);

void augmenter_destroy(augmenter_t **self_p);

/* --preview: writes the grid of every augmentation of o->preview to
 * o->output; the exit status. argv0 is the program's, for libvips. */
int augmenter_preview(const augmenter_options_t *o, const char *argv0);

#endif
