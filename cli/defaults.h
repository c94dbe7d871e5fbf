/* cli/defaults: the default endpoints of the pipeline's sockets, the one
 * place every executable takes them from. run.sh reads the ports here too
 * (its --help shows them, and --port-base moves the four together: loader
 * P, trainer P+1, evaluator P+2, control P+3), so keep them consecutive and
 * keep each on a line of its own: #define CLI_PORT_NAME NUMBER. */
#ifndef CLI_DEFAULTS_H
#define CLI_DEFAULTS_H

#define CLI_HOST            "127.0.0.1"
#define CLI_PORT_LOADER     5555   /* loader PUSH: Samples to the augmenters */
#define CLI_PORT_TRAINER    5556   /* trainer PULL: ViewBatches from the augmenters */
#define CLI_PORT_EVALUATOR  5557   /* evaluator PULL: Checkpoints from the trainer */
#define CLI_PORT_CONTROL    5558   /* trainer XPUB: Control (stop, heartbeat, Acks) */

_Static_assert(CLI_PORT_TRAINER == CLI_PORT_LOADER + 1 && CLI_PORT_EVALUATOR == CLI_PORT_LOADER + 2 &&
                   CLI_PORT_CONTROL == CLI_PORT_LOADER + 3,
               "run.sh --port-base numbers the ports from the loader's");

#define CLI_STR_(x) #x
#define CLI_STR(x)  CLI_STR_(x)
/* "tcp://127.0.0.1:PORT", a string literal */
#define CLI_TCP(port) "tcp://" CLI_HOST ":" CLI_STR(port)

#define CLI_ENDPOINT_LOADER    CLI_TCP(CLI_PORT_LOADER)
#define CLI_ENDPOINT_TRAINER   CLI_TCP(CLI_PORT_TRAINER)
#define CLI_ENDPOINT_EVALUATOR CLI_TCP(CLI_PORT_EVALUATOR)
#define CLI_ENDPOINT_CONTROL   CLI_TCP(CLI_PORT_CONTROL)

#endif
