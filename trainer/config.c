/* trainer/config: the run's settings: from the command line, to and from the
 * checkpoint's state JSON, and the resumed run's merge of both. */
#include "trainer/config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "console/console.h"
#include "errmsg/errmsg.h"

#define NUM_MAX 32   /* a 64-bit number in decimal, with room */

void trainer_config_from_options(trainer_config_t *c, const trainer_options_t *o)
{
    memset(c, 0, sizeof *c);
    c->method = o->method;
    snprintf(c->arch, sizeof c->arch, "%s", o->arch);
    c->width = o->width;
    c->batch = o->batch;
    c->optimizer = o->optimizer;
    c->lr = o->lr;
    c->weight_decay = o->weight_decay;
    c->momentum = o->momentum;
    c->tau = o->tau;
    c->decoupled = o->decoupled;
    c->ema = o->ema;
    c->classes = o->classes;
    c->warmup_steps = o->warmup_steps;
    c->warmup_epochs = o->warmup_epochs;
    c->epochs = o->epochs;
    c->steps = o->steps;
    c->minutes = o->minutes;
    c->total_steps = 0;
    c->dataset_size = o->dataset_size;
    c->seed = o->seed;
    c->sync_bn = o->sync_bn;
}

int trainer_config_to_json(const trainer_config_t *c, json_t *j)
{
    /* 64-bit unsigned values as strings: JSON numbers are not exact beyond 2^53 */
    char dsize[NUM_MAX], seed[NUM_MAX];
    snprintf(dsize, sizeof dsize, "%llu", (unsigned long long)c->dataset_size);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    json_t *f = json_pack("{s:s, s:s, s:i, s:I, s:s, s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:s, s:s}",
                          "method", trainer_method_name(c->method), "arch", c->arch, "width", c->width,
                          "batch", (json_int_t)c->batch, "optimizer", nn_optim_kind_name(c->optimizer),
                          "lr", c->lr, "weight_decay", c->weight_decay, "momentum", c->momentum,
                          "tau", c->tau, "warmup_steps", (json_int_t)c->warmup_steps,
                          "total_steps", (json_int_t)c->total_steps, "epochs", c->epochs,
                          "dataset_size", dsize, "seed", seed);
    int rc = f && json_object_set_new(f, "sync_bn", json_boolean(c->sync_bn)) == 0 &&
             json_object_set_new(f, "loss", json_string(c->decoupled ? "dcl" : "ntxent")) == 0 &&
             json_object_set_new(f, "ema", json_real(c->ema)) == 0 &&
             json_object_set_new(f, "minutes", json_real(c->minutes)) == 0 &&
             json_object_update(j, f) == 0 ? 0 : -1;
    json_decref(f);
    return rc;
}

int trainer_config_parse_u64(const char *s, int base, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int trainer_config_from_json(trainer_config_t *c, json_t *j, char *err, size_t errlen)
{
    json_error_t je;
    const char *method = NULL, *arch = NULL, *optimizer = NULL, *dsize = NULL, *seed = NULL;
    json_int_t batch = 0, warmup = 0, total = 0;
    memset(c, 0, sizeof *c);
    if (json_unpack_ex(j, &je, 0, "{s:s, s:s, s:i, s:I, s:s, s:F, s:F, s:F, s:F, s:I, s:I, s:F, s:s, s:s}",
                       "method", &method, "arch", &arch, "width", &c->width, "batch", &batch,
                       "optimizer", &optimizer, "lr", &c->lr, "weight_decay", &c->weight_decay,
                       "momentum", &c->momentum, "tau", &c->tau, "warmup_steps", &warmup,
                       "total_steps", &total, "epochs", &c->epochs, "dataset_size", &dsize, "seed", &seed)) {
        errmsg_set(err, errlen, "%s", je.text);
        return -1;
    }
    if (trainer_method_parse(method, &c->method) || nn_optim_kind_parse(optimizer, &c->optimizer)) {
        errmsg_set(err, errlen, "unknown method '%s' or optimizer '%s'", method, optimizer);
        return -1;
    }
    if (trainer_config_parse_u64(dsize, 10, &c->dataset_size) || trainer_config_parse_u64(seed, 10, &c->seed) ||
        batch < 1 || batch > UINT32_MAX || warmup < 0 || total < 0 || strlen(arch) >= sizeof c->arch) {
        errmsg_set(err, errlen, "a value is out of range");
        return -1;
    }
    /* states written before data-parallel training have no sync_bn: per-rank batch norm */
    c->sync_bn = json_is_true(json_object_get(j, "sync_bn"));
    /* and before the decoupled loss: NT-Xent */
    const char *loss = json_string_value(json_object_get(j, "loss"));
    if (loss && strcmp(loss, "ntxent") && strcmp(loss, "dcl")) {
        errmsg_set(err, errlen, "unknown loss '%s'", loss);
        return -1;
    }
    c->decoupled = loss && strcmp(loss, "dcl") == 0;
    /* and before the moving average: none */
    json_t *ema = json_object_get(j, "ema");
    c->ema = json_is_number(ema) ? json_number_value(ema) : 0.0;
    if (c->ema < 0 || c->ema >= 1) {
        errmsg_set(err, errlen, "ema %g is not in [0, 1)", c->ema);
        return -1;
    }
    /* and before time budgets: none */
    json_t *minutes = json_object_get(j, "minutes");
    c->minutes = json_is_number(minutes) ? json_number_value(minutes) : 0.0;
    if (c->minutes < 0 || !isfinite(c->minutes)) {
        errmsg_set(err, errlen, "minutes %g is not a time budget", c->minutes);
        return -1;
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    c->batch = (uint32_t)batch;
    c->warmup_steps = (long)warmup;
    c->total_steps = (long)total;
    c->steps = c->epochs > 0 || c->minutes > 0 ? 0 : c->total_steps;
    return 0;
}

int trainer_arch_is_preset(const char *arch)
{
    return strcmp(arch, "resnet-mini") == 0 || strcmp(arch, "conv4") == 0;
}

/* An option given on the command line that must match the resumed run. */
static int check_same(const char *what, int given, int equal, const char *run_value, char *err, size_t errlen)
{
    if (given && !equal) {
        errmsg_set(err, errlen, "%s differs from the resumed run's (%s); resume with the same value or "
                   "start a new run in another --out folder", what, run_value);
        return -1;
    }
    return 0;
}

static void warn_kept(const char *what, int given, double mine, double run)
{
    if (given && fabs(mine - run) > 1e-12 * fmax(1.0, fabs(run)))
        console_log("%s %g ignored: the resumed run keeps its %g", what, mine, run);
}

int trainer_config_resume(trainer_config_t *c, const trainer_config_t *saved, const trainer_options_t *o, char *err,
                          size_t errlen)
{
    char batch[NUM_MAX], width[NUM_MAX];
    snprintf(batch, sizeof batch, "%u", saved->batch);
    snprintf(width, sizeof width, "%d", saved->width);
    if (check_same("--method", o->set_method, c->method == saved->method, trainer_method_name(saved->method), err,
                   errlen) ||
        check_same("--optimizer", o->set_optimizer, c->optimizer == saved->optimizer,
                   nn_optim_kind_name(saved->optimizer), err, errlen) ||
        check_same("--batch", o->set_batch, c->batch == saved->batch, batch, err, errlen) ||
        check_same("--arch", o->set_arch, strcmp(c->arch, saved->arch) == 0, saved->arch, err, errlen) ||
        check_same("--width", o->set_width && trainer_arch_is_preset(saved->arch), c->width == saved->width, width,
                   err, errlen) ||
        check_same("--loss", o->set_loss, c->decoupled == saved->decoupled, saved->decoupled ? "dcl" : "ntxent",
                   err, errlen))
        return -1;
    warn_kept("--lr", o->set_lr, c->lr, saved->lr);
    warn_kept("--weight-decay", o->set_wd, c->weight_decay, saved->weight_decay);
    warn_kept("--momentum", o->set_momentum, c->momentum, saved->momentum);
    warn_kept("--tau", o->set_tau, c->tau, saved->tau);
    warn_kept("--ema", o->set_ema, c->ema, saved->ema);
    if (o->set_warmup)
        console_log("--warmup ignored: the resumed run keeps its %ld steps", saved->warmup_steps);

    trainer_config_t given = *c;
    *c = *saved;
    c->classes = given.classes;   /* the network's head says (trainer.c checks it) */
    if (o->set_sync_bn && !saved->sync_bn) {
        console_log("--sync-bn: the resumed run continues with synchronised batch norm");
        c->sync_bn = 1;
    }
    if (given.dataset_size)
        c->dataset_size = given.dataset_size;
    if (o->set_length) {
        c->epochs = given.epochs;
        c->steps = given.steps;
        c->minutes = given.minutes;
        c->total_steps = 0;   /* recomputed from the new --steps / --epochs / --minutes */
    }
    return 0;
}
