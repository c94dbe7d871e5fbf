/* evaluator/server: the evaluator's server mode. Checkpoint messages
 * arrive on a PULL socket (a file path, or the file's bytes, written to the
 * output folder and deleted after use); the newest step waiting is evaluated
 * first, at most --max-pending are kept. With a control socket, the
 * trainer's STOP means: evaluate what is waiting (and a Checkpoint sent just
 * before the STOP), then return. A checkpoint that cannot be evaluated is
 * logged and the server goes on with the next one.
 */
#ifndef EVALUATOR_SERVER_H
#define EVALUATOR_SERVER_H

#include "evaluator/evaluate.h"
#include "evaluator/options.h"

typedef struct eval_server eval_server_t;

/* A server for o's sockets evaluating with ctx; o and ctx must outlive it.
 * NULL when out of memory. */
eval_server_t *eval_server_new(const eval_options *o, eval_ctx *ctx);

/* Opens the output folder and the sockets and serves until STOP or a
 * signal; the exit status (CLI_EXIT_FAILED when a socket or the folder
 * cannot be opened). */
int eval_server_run(eval_server_t *s);

void eval_server_destroy(eval_server_t **self_p);

#endif
