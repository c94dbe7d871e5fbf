/* nn/ckpt: checkpoint save and validated load. */
#include "errmsg/errmsg.h"
#include "nn/ckpt.h"
#include "nn/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRC_KEY "checksum"

static int add_items(nn_st_item *items, int n, const nn_arena *a)
{
    for (int i = 0; i < a->n; i++) {
        items[n].name = a->t[i].name;
        items[n].ndim = a->t[i].ndim;
        items[n].shape = a->t[i].shape;
        items[n].data = a->t[i].data;
        n++;
    }
    return n;
}

int nn_ckpt_save(const char *path, nn_net *net, nn_optim *opt, const char *method,
                 long step, long epoch, char *err, size_t errlen)
{
    nn_arena *p = nn_net_params(net), *s = opt ? nn_optim_state(opt) : NULL;
    int cap = p->n + (s ? s->n : 0);
    nn_st_item *items = calloc((size_t)(cap ? cap : 1), sizeof *items);
    if (!items) {
        errmsg_set(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int n = add_items(items, 0, p);
    if (s)
        n = add_items(items, n, s);
    char version[16], stp[32], ep[32], ostp[32], *ocfg = NULL;
    snprintf(version, sizeof version, "%d", NN_CKPT_VERSION);
    snprintf(stp, sizeof stp, "%ld", step);
    snprintf(ep, sizeof ep, "%ld", epoch);
    const char *keys[12] = { "format", "nn_format", "nn_version", "nn_desc", "method", "step", "epoch" };
    const char *vals[12] = { "pt", NN_CKPT_FORMAT, version, nn_net_desc(net), method ? method : "", stp, ep };
    int nm = 7;
    if (opt) {
        const nn_optim_config *c = nn_optim_config_of(opt);
        json_t *j = json_pack("{s:f, s:b, s:f, s:b, s:f, s:f, s:f, s:f}", "momentum", (double)c->momentum,
                              "nesterov", c->nesterov, "weight_decay", (double)c->weight_decay,
                              "decay_all", c->decay_all, "beta1", (double)c->beta1, "beta2", (double)c->beta2,
                              "eps", (double)c->eps, "trust_coef", (double)c->trust_coef);
        ocfg = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        json_decref(j);
        snprintf(ostp, sizeof ostp, "%ld", nn_optim_steps(opt));
        keys[nm] = "optimizer"; vals[nm++] = nn_optim_kind_name(c->kind);
        keys[nm] = "optimizer_steps"; vals[nm++] = ostp;
        keys[nm] = "optimizer_config"; vals[nm++] = ocfg ? ocfg : "{}";
    }
    int rc = nn_st_write(path, items, n, keys, vals, nm, CRC_KEY, err, errlen);
    free(ocfg);
    free(items);
    return rc;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Checks format, version, checksum; fills meta. */
static int check_meta(const nn_st_file *f, const char *path, nn_ckpt_meta *meta, char *err, size_t errlen)
{
    const char *fmt = nn_st_meta(f, "nn_format"), *ver = nn_st_meta(f, "nn_version");
    if (!fmt || strcmp(fmt, NN_CKPT_FORMAT) != 0) {
        errmsg_set(err, errlen, "%s: not an nn checkpoint (metadata nn_format is %s%s%s, expected '%s')",
                path, fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "", NN_CKPT_FORMAT);
        return -1;
    }
    long v;
    if (parse_long(ver, &v) || v != NN_CKPT_VERSION) {
        errmsg_set(err, errlen, "%s: checkpoint version %s, this build reads version %d", path,
                ver ? ver : "missing", NN_CKPT_VERSION);
        return -1;
    }
    const char *pt = nn_st_meta(f, "format");
    if (!pt || strcmp(pt, "pt") != 0) {
        errmsg_set(err, errlen, "%s: metadata format is %s, expected 'pt'", path, pt ? pt : "missing");
        return -1;
    }
    const char *sum = nn_st_meta(f, CRC_KEY);
    char have[32];
    snprintf(have, sizeof have, "crc32:%08x", (unsigned)nn_st_data_crc(f));
    if (!sum || strcmp(sum, have) != 0) {
        errmsg_set(err, errlen, "%s: checksum mismatch: metadata says %s, the data has %s: the file is corrupt",
                path, sum ? sum : "nothing", have);
        return -1;
    }
    const char *desc = nn_st_meta(f, "nn_desc"), *method = nn_st_meta(f, "method");
    nn_ckpt_meta m = { .has_optimizer = nn_st_meta(f, "optimizer") != NULL };
    if (!desc || !method || parse_long(nn_st_meta(f, "step"), &m.step) ||
        parse_long(nn_st_meta(f, "epoch"), &m.epoch)) {
        errmsg_set(err, errlen, "%s: metadata needs nn_desc, method, and integer step and epoch", path);
        return -1;
    }
    if (meta) {
        snprintf(m.method, sizeof m.method, "%s", method);
        m.desc = strdup(desc);
        *meta = m;
    }
    return 0;
}

/* First line where two descriptions differ, for the message. */
static void first_difference(const char *a, const char *b, char *out, size_t len)
{
    int line = 1;
    const char *la = a, *lb = b;
    while (*a && *a == *b) {
        if (*a == '\n') {
            line++;
            la = a + 1;
            lb = b + 1;
        }
        a++;
        b++;
    }
    int na = (int)strcspn(la, "\n"), nb = (int)strcspn(lb, "\n");
    snprintf(out, len, "line %d: file has '%.*s', network has '%.*s'", line, na, la, nb, lb);
}

static int check_tensors(const nn_st_file *f, const char *path, const nn_arena *a, char *err, size_t errlen)
{
    for (int i = 0; i < a->n; i++) {
        const nn_st_entry *e = nn_st_find(f, a->t[i].name);
        if (!e) {
            errmsg_set(err, errlen, "%s: tensor '%s' missing", path, a->t[i].name);
            return -1;
        }
        if (e->ndim != a->t[i].ndim || memcmp(e->shape, a->t[i].shape, sizeof(int) * (size_t)e->ndim)) {
            char fs[64], ns[64];
            nn_shape_str(fs, sizeof fs, e->ndim, e->shape);
            nn_shape_str(ns, sizeof ns, a->t[i].ndim, a->t[i].shape);
            errmsg_set(err, errlen, "%s: tensor '%s' has shape %s in the file, %s in the network",
                    path, a->t[i].name, fs, ns);
            return -1;
        }
    }
    return 0;
}

static void copy_tensors(const nn_st_file *f, nn_arena *a)
{
    for (int i = 0; i < a->n; i++)
        nn_st_copy(f, nn_st_find(f, a->t[i].name), a->t[i].data);
}

static int load_file(nn_st_file *f, const char *path, nn_net *net, nn_optim *opt, nn_ckpt_meta *meta,
                     char *err, size_t errlen)
{
    nn_ckpt_meta m;
    if (check_meta(f, path, &m, err, errlen))
        return -1;
    int rc = -1;
    nn_arena *p = nn_net_params(net), *s = opt ? nn_optim_state(opt) : NULL;
    if (strcmp(m.desc, nn_net_desc(net)) != 0) {
        char diff[512];
        first_difference(m.desc, nn_net_desc(net), diff, sizeof diff);
        errmsg_set(err, errlen, "%s: the checkpoint's network description differs from this network's (%s)",
                path, diff);
        goto out;
    }
    if (check_tensors(f, path, p, err, errlen))
        goto out;
    long osteps = 0;
    if (opt) {
        const char *kind = nn_st_meta(f, "optimizer");
        const char *want = nn_optim_kind_name(nn_optim_config_of(opt)->kind);
        if (!kind) {
            errmsg_set(err, errlen, "%s: the checkpoint has no optimizer state (saved without one); "
                    "load it without an optimizer", path);
            goto out;
        }
        if (strcmp(kind, want) != 0) {
            errmsg_set(err, errlen, "%s: optimizer state is for %s, this run uses %s", path, kind, want);
            goto out;
        }
        if (parse_long(nn_st_meta(f, "optimizer_steps"), &osteps) || osteps < 0) {
            errmsg_set(err, errlen, "%s: metadata optimizer_steps missing or not an integer", path);
            goto out;
        }
        if (check_tensors(f, path, s, err, errlen))
            goto out;
    }
    /* nothing unknown: every tensor belongs to the network or an optimizer */
    for (int i = 0; i < f->n; i++)
        if (!nn_arena_find(p, f->e[i].name) && strncmp(f->e[i].name, "optimizer.", 10) != 0) {
            errmsg_set(err, errlen, "%s: unexpected tensor '%s' (not a parameter of this network)",
                    path, f->e[i].name);
            goto out;
        }
    copy_tensors(f, p);
    if (opt) {
        copy_tensors(f, s);
        nn_optim_set_steps(opt, osteps);
    }
    rc = 0;
out:
    if (rc == 0 && meta)
        *meta = m;
    else
        nn_ckpt_meta_clear(&m);
    return rc;
}

int nn_ckpt_load(const char *path, nn_net *net, nn_optim *opt, nn_ckpt_meta *meta,
                 char *err, size_t errlen)
{
    nn_st_file f;
    int rc = nn_st_read(&f, path, err, errlen) ? -1 : load_file(&f, path, net, opt, meta, err, errlen);
    nn_st_close(&f);
    return rc;
}

int nn_ckpt_read_meta(const char *path, nn_ckpt_meta *meta, char *err, size_t errlen)
{
    nn_st_file f;
    int rc = nn_st_read(&f, path, err, errlen) ? -1 : check_meta(&f, path, meta, err, errlen);
    nn_st_close(&f);
    return rc;
}

nn_net *nn_ckpt_open(const char *path, int max_batch, nn_ckpt_meta *meta, char *err, size_t errlen)
{
    nn_st_file f;
    nn_ckpt_meta m = { 0 };
    nn_net *net = NULL;
    if (nn_st_read(&f, path, err, errlen) || check_meta(&f, path, &m, err, errlen))
        goto out;
    char sub[384];
    net = nn_net_new(m.desc, max_batch, sub, sizeof sub);
    if (!net) {
        errmsg_set(err, errlen, "%s: bad network description in the checkpoint: %s", path, sub);
        goto out;
    }
    if (load_file(&f, path, net, NULL, meta, err, errlen))
        nn_net_destroy(&net);
out:
    nn_ckpt_meta_clear(&m);
    nn_st_close(&f);
    return net;
}

void nn_ckpt_meta_clear(nn_ckpt_meta *meta)
{
    free(meta->desc);
    memset(meta, 0, sizeof *meta);
}
