/* nn/net: description parser, presets, and the forward/backward drivers. */
#include "errmsg/errmsg.h"
#include "nn/net.h"
#include "nn/layers.h"
#include "splitmix/splitmix.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NN_MAX_RES_DEPTH 8

enum layer_kind { L_CONV, L_BN, L_RELU, L_MAXPOOL, L_GAP, L_FLATTEN, L_LINEAR, L_L2NORM,
                  L_RES, L_END, L_COUNT };
static const char *const kind_name[L_COUNT] = {
    "conv", "bn", "relu", "maxpool", "gap", "flatten", "linear", "l2norm", "res", "end" };
static const char *const section_name[] = { "", "encoder", "head" };

typedef struct layer {
    int kind, section, index, line;
    int out, k, s, p, bias;      /* options from the description */
    int in_ndim, in_shape[3];    /* one image: (C, H, W) or (F) */
    int out_ndim, out_shape[3];
    int in, out_act, skip;       /* activation indices; skip for "end" */
    int w, b, rm, rv;            /* parameter indices, -1 when absent */
    int cache;                   /* scratch index, -1 when absent */
    int fused;                   /* bn: also applies the next relu; relu: done by the bn before it */
    double t_fw, t_bw;           /* profile seconds */
} layer;

struct nn_net {
    char *desc;
    int max_batch, n, trained;   /* n: batch of the last forward; trained: it was a training one */
    int in_c, in_h, in_w;
    layer *L;
    int nl, n_enc;
    nn_arena params, grads;      /* parameters (+ BN statistics) and their gradients */
    nn_arena acts, dacts;        /* activations (max_batch, ...) and their gradients */
    nn_arena scratch;            /* caches and the shared convolution workspace */
    int ws;                      /* scratch index of the workspace, -1 if no conv */
    int feat_act, out_act, feat_dim, out_dim;
    int profile, prof_steps;
    unsigned char *grad_set;     /* (acts.n) during backward: the activation's gradient is written */
    nn_bn_sync bn_sync;          /* synchronised batch norm: sum is NULL when off */
    double *bn_ws;               /* NN_BN_SYNC_WS(widest BN) doubles when on */
    nn_grad_ready grad_ready;    /* ready is NULL when off */
    size_t *final_from;          /* (nl) with it: after layer i's backward, the gradients from
                                    this offset to the end are final */
};

static size_t img_numel(int ndim, const int *shape)
{
    return nn_shape_numel(ndim, shape);
}

/* ------------------------------------------------------------- presets */

static int emit(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf + *used, *used < len ? len - *used : 0, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -1;
    *used += (size_t)r;
    return *used < len ? 0 : -1;
}

static int emit_conv_bn_relu(char *buf, size_t len, size_t *u, int width)
{
    return emit(buf, len, u, "conv out=%d k=3 s=1 p=1 bias=0\nbn\nrelu\n", width);
}

/* Outputs of a "classifier" or "classifier:N" head: N, NN_DEFAULT_CLASSES
 * without ":N", -1 for a malformed one (another suffix, N not a whole number
 * in 1..NN_MAX_CLASSES), 0 when head does not start with "classifier". */
static int classifier_outputs(const char *head)
{
    size_t n = strlen(NN_HEAD_CLASSIFIER);
    if (strncmp(head, NN_HEAD_CLASSIFIER, n) != 0)
        return 0;
    if (head[n] == '\0')
        return NN_DEFAULT_CLASSES;
    if (head[n] != ':' || !isdigit((unsigned char)head[n + 1]))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(head + n + 1, &end, 10);
    if (errno || *end || v < 1 || v > NN_MAX_CLASSES)
        return -1;
    return (int)v;
}

int nn_preset_desc(char *buf, size_t len, const char *net, int width, const char *head,
                   int in_c, int in_h, int in_w, char *err, size_t errlen)
{
    size_t u = 0;
    int r = 0;
    if (width < 1 || width > 4096) {
        errmsg_set(err, errlen, "width %d out of range (1..4096)", width);
        return -1;
    }
    r |= emit(buf, len, &u, "%s %d\n# preset %s width %d head %s\ninput %d %d %d\nencoder\n",
              NN_DESC_FORMAT, NN_DESC_VERSION, net, width, head, in_c, in_h, in_w);
    if (strcmp(net, "resnet-mini") == 0) {
        r |= emit_conv_bn_relu(buf, len, &u, width);
        r |= emit_conv_bn_relu(buf, len, &u, 2 * width);
        r |= emit(buf, len, &u, "maxpool k=2 s=2\nres\n");
        r |= emit_conv_bn_relu(buf, len, &u, 2 * width);
        r |= emit_conv_bn_relu(buf, len, &u, 2 * width);
        r |= emit(buf, len, &u, "end\n");
        r |= emit_conv_bn_relu(buf, len, &u, 4 * width);
        r |= emit(buf, len, &u, "maxpool k=2 s=2\n");
        r |= emit_conv_bn_relu(buf, len, &u, 8 * width);
        r |= emit(buf, len, &u, "maxpool k=2 s=2\nres\n");
        r |= emit_conv_bn_relu(buf, len, &u, 8 * width);
        r |= emit_conv_bn_relu(buf, len, &u, 8 * width);
        r |= emit(buf, len, &u, "end\ngap\n");
    } else if (strcmp(net, "conv4") == 0) {
        for (int i = 0; i < 4; i++) {
            r |= emit_conv_bn_relu(buf, len, &u, width << i);
            r |= emit(buf, len, &u, "maxpool k=2 s=2\n");
        }
        r |= emit(buf, len, &u, "gap\n");
    } else {
        errmsg_set(err, errlen, "unknown network preset '%s' (expected resnet-mini or conv4)", net);
        return -1;
    }
    int feat = 8 * width;
    int classes = classifier_outputs(head);
    if (classes > 0)
        r |= emit(buf, len, &u, "head\nlinear out=%d bias=1\n", classes);
    else if (classes < 0) {
        errmsg_set(err, errlen, "head '%s': expected %s or %s:N with N classes in 1..%d", head,
                   NN_HEAD_CLASSIFIER, NN_HEAD_CLASSIFIER, NN_MAX_CLASSES);
        return -1;
    } else if (strcmp(head, "simclr") == 0)
        r |= emit(buf, len, &u, "head\nlinear out=%d bias=0\nbn\nrelu\nlinear out=%d bias=1\n",
                  feat, NN_PROJ_DIM);
    else if (strcmp(head, "rotation") == 0)
        r |= emit(buf, len, &u, "head\nlinear out=%d bias=1\n", NN_ROT_CLASSES);
    else if (strcmp(head, "none") != 0) {
        errmsg_set(err, errlen, "unknown head '%s' (expected simclr, rotation, classifier[:N] or none)", head);
        return -1;
    }
    if (r) {
        errmsg_set(err, errlen, "description buffer of %zu bytes too small", len);
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- parser */

typedef struct parser {
    nn_net *net;
    int line, section, sec_index;
    int ndim, shape[3], cur;          /* current activation */
    int res_stack[NN_MAX_RES_DEPTH], res_depth;
    size_t ws_floats;
    char *err;
    size_t errlen;
} parser;

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1 << 24)
        return -1;
    *out = (int)v;
    return 0;
}

/* Reads "key=value" options into layer fields; keys allowed per kind. */
static int parse_options(parser *ps, layer *l, char **tok, int ntok)
{
    static const char *const allowed[L_COUNT] = {
        [L_CONV] = "out k s p bias", [L_MAXPOOL] = "k s", [L_LINEAR] = "out bias" };
    const char *keys = allowed[l->kind] ? allowed[l->kind] : "";
    for (int i = 0; i < ntok; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq) {
            errmsg_set(ps->err, ps->errlen, "line %d: %s: expected key=value, got '%s' (keys: %s)",
                    ps->line, kind_name[l->kind], tok[i], *keys ? keys : "none");
            return -1;
        }
        *eq = 0;
        const char *key = tok[i], *val = eq + 1;
        int *field = NULL;
        if (strcmp(key, "out") == 0) field = &l->out;
        else if (strcmp(key, "k") == 0) field = &l->k;
        else if (strcmp(key, "s") == 0) field = &l->s;
        else if (strcmp(key, "p") == 0) field = &l->p;
        else if (strcmp(key, "bias") == 0) field = &l->bias;
        /* the key must be a whole word of the allowed list */
        const char *at = field ? strstr(keys, key) : NULL;
        size_t kl = strlen(key);
        while (at && !((at == keys || at[-1] == ' ') && (at[kl] == ' ' || at[kl] == 0)))
            at = strstr(at + 1, key);
        if (!field || !at) {
            errmsg_set(ps->err, ps->errlen, "line %d: %s: unknown key '%s' (keys: %s)",
                    ps->line, kind_name[l->kind], key, *keys ? keys : "none");
            return -1;
        }
        if (parse_int(val, field) || (field == &l->bias && *field > 1)) {
            errmsg_set(ps->err, ps->errlen, "line %d: %s: bad value '%s' for %s (expected %s)",
                    ps->line, kind_name[l->kind], val, key,
                    field == &l->bias ? "0 or 1" : "a non-negative integer");
            return -1;
        }
    }
    return 0;
}

static int add_act(parser *ps, int ndim, const int *shape)
{
    char name[NN_MAX_NAME];
    int full[4] = { ps->net->max_batch, 0, 0, 0 };
    for (int i = 0; i < ndim; i++)
        full[i + 1] = shape[i];
    snprintf(name, sizeof name, "act.%d", ps->net->acts.n);
    return nn_arena_add(&ps->net->acts, name, ndim + 1, full, 0);
}

static int add_param(parser *ps, layer *l, const char *what, int ndim, const int *shape, int flags)
{
    char name[NN_MAX_NAME];
    snprintf(name, sizeof name, "%s.layers.%d.%s", section_name[l->section], l->index, what);
    return nn_arena_add(&ps->net->params, name, ndim, shape, flags);
}

static int add_scratch(parser *ps, layer *l, size_t floats)
{
    char name[NN_MAX_NAME];
    int shape[1] = { (int)floats };
    snprintf(name, sizeof name, "cache.%d", (int)(l - ps->net->L));
    return nn_arena_add(&ps->net->scratch, name, 1, shape, 0);
}

static void shape_text(char *buf, size_t len, int ndim, const int *shape)
{
    int full[4] = { -1 };
    for (int i = 0; i < ndim; i++)
        full[i + 1] = shape[i];
    nn_shape_str(buf, len, ndim + 1, full);
    char *p = strstr(buf, "-1");
    if (p) { p[0] = 'N'; memmove(p + 1, p + 2, strlen(p + 2) + 1); }
}

/* Plans one layer: output shape, parameters, activations. */
static int plan_layer(parser *ps, layer *l)
{
    nn_net *net = ps->net;
    int mb = net->max_batch, C = ps->shape[0], H = ps->shape[1], W = ps->shape[2];
    int nshape[3] = { 0 }, nd = ps->ndim;
    char sh[64];
    shape_text(sh, sizeof sh, ps->ndim, ps->shape);
    l->in = ps->cur;
    l->in_ndim = ps->ndim;
    memcpy(l->in_shape, ps->shape, sizeof l->in_shape);
    l->w = l->b = l->rm = l->rv = l->cache = l->skip = -1;
    int needs_map = l->kind == L_CONV || l->kind == L_MAXPOOL || l->kind == L_GAP || l->kind == L_FLATTEN;
    int needs_vec = l->kind == L_LINEAR || l->kind == L_L2NORM;
    if ((needs_map && ps->ndim != 3) || (needs_vec && ps->ndim != 1)) {
        errmsg_set(ps->err, ps->errlen, "line %d: %s needs a %s input, got %s%s", l->line,
                kind_name[l->kind], needs_map ? "(N, C, H, W)" : "(N, F)", sh,
                needs_vec ? " (add gap or flatten before it)" : "");
        return -1;
    }
    memcpy(nshape, ps->shape, sizeof nshape);
    switch (l->kind) {
    case L_CONV: {
        nn_conv_dims d;
        if (l->out < 1) {
            errmsg_set(ps->err, ps->errlen, "line %d: conv needs out=<channels>", l->line);
            return -1;
        }
        if (nn_conv_dims_init(&d, mb, C, H, W, l->out, l->k, l->s, l->p)) {
            errmsg_set(ps->err, ps->errlen, "line %d: conv k=%d s=%d p=%d on %s gives an empty output",
                    l->line, l->k, l->s, l->p, sh);
            return -1;
        }
        nshape[0] = l->out; nshape[1] = d.oh; nshape[2] = d.ow;
        int ws[4] = { l->out, C, l->k, l->k };
        l->w = add_param(ps, l, "weight", 4, ws, NN_T_TRAIN | NN_T_DECAY);
        if (l->bias)
            l->b = add_param(ps, l, "bias", 1, ws, NN_T_TRAIN);
        size_t need = nn_conv2d_workspace(&d);
        if (need > ps->ws_floats)
            ps->ws_floats = need;
        break;
    }
    case L_BN: {
        int cs[1] = { C };
        l->w = add_param(ps, l, "weight", 1, cs, NN_T_TRAIN);
        l->b = add_param(ps, l, "bias", 1, cs, NN_T_TRAIN);
        l->rm = add_param(ps, l, "running_mean", 1, cs, NN_T_BUFFER);
        l->rv = add_param(ps, l, "running_var", 1, cs, NN_T_BUFFER);
        l->cache = add_scratch(ps, l, 2 * (size_t)C);
        break;
    }
    case L_RELU:
        /* directly after a bn (same section, its output): the bn applies it and
         * writes its output in place, one pass instead of two, one buffer less */
        if (l > net->L && l[-1].kind == L_BN && l[-1].out_act == ps->cur && l[-1].section == l->section) {
            l[-1].fused = 1;
            l->fused = 1;
        }
        break;
    case L_MAXPOOL: {
        nn_pool_dims d;
        if (nn_pool_dims_init(&d, mb, C, H, W, l->k, l->s)) {
            errmsg_set(ps->err, ps->errlen, "line %d: maxpool k=%d s=%d does not fit %s",
                    l->line, l->k, l->s, sh);
            return -1;
        }
        nshape[1] = d.oh; nshape[2] = d.ow;
        l->cache = add_scratch(ps, l, (size_t)mb * C * d.oh * d.ow);
        break;
    }
    case L_GAP:
        nd = 1;
        break;
    case L_FLATTEN:
        nd = 1;
        nshape[0] = C * H * W;
        break;
    case L_LINEAR: {
        if (l->out < 1) {
            errmsg_set(ps->err, ps->errlen, "line %d: linear needs out=<features>", l->line);
            return -1;
        }
        int ws[2] = { l->out, C };
        l->w = add_param(ps, l, "weight", 2, ws, NN_T_TRAIN | NN_T_DECAY);
        if (l->bias)
            l->b = add_param(ps, l, "bias", 1, ws, NN_T_TRAIN);
        nshape[0] = l->out;
        break;
    }
    case L_L2NORM:
        l->cache = add_scratch(ps, l, (size_t)mb);
        break;
    case L_RES:
        if (ps->res_depth == NN_MAX_RES_DEPTH) {
            errmsg_set(ps->err, ps->errlen, "line %d: residual blocks nested deeper than %d",
                    l->line, NN_MAX_RES_DEPTH);
            return -1;
        }
        ps->res_stack[ps->res_depth++] = (int)(l - net->L);
        break;
    case L_END: {
        if (ps->res_depth == 0) {
            errmsg_set(ps->err, ps->errlen, "line %d: 'end' without a matching 'res'", l->line);
            return -1;
        }
        layer *open = &net->L[ps->res_stack[--ps->res_depth]];
        if (open->section != l->section) {
            errmsg_set(ps->err, ps->errlen, "line %d: residual block opened on line %d crosses sections",
                    l->line, open->line);
            return -1;
        }
        if (open->in_ndim != ps->ndim || memcmp(open->in_shape, ps->shape, sizeof ps->shape)) {
            char sh2[64];
            shape_text(sh2, sizeof sh2, open->in_ndim, open->in_shape);
            errmsg_set(ps->err, ps->errlen, "line %d: residual block from line %d changes the shape "
                    "%s -> %s; both sides of the add must match", l->line, open->line, sh2, sh);
            return -1;
        }
        l->skip = open->in;
        break;
    }
    }
    if (nd == 1) { nshape[1] = nshape[2] = 0; }
    l->out_ndim = nd;
    memcpy(l->out_shape, nshape, sizeof nshape);
    if (l->kind == L_FLATTEN || l->kind == L_RES || (l->kind == L_RELU && l->fused))
        l->out_act = ps->cur;                 /* same memory, new view (or in place) */
    else if ((l->out_act = add_act(ps, nd, nshape)) < 0)
        return -1;
    ps->cur = l->out_act;
    ps->ndim = nd;
    memcpy(ps->shape, nshape, sizeof nshape);
    return 0;
}

static int split_words(char *s, char **tok, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(s, " \t\r", &save); p; p = strtok_r(NULL, " \t\r", &save)) {
        if (n == max)
            return -1;
        tok[n++] = p;
    }
    return n;
}

static int parse_desc(nn_net *net, char *text, char *err, size_t errlen)
{
    parser ps = { .net = net, .err = err, .errlen = errlen, .cur = -1 };
    int have_magic = 0, have_input = 0, cap = 0;
    char *save = NULL;
    int line_no = 0;
    for (char *line = text; line; line = save) {
        save = strchr(line, '\n');
        if (save)
            *save++ = 0;
        line_no++;
        ps.line = line_no;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *tok[16];
        int nt = split_words(line, tok, 16);
        if (nt < 0) {
            errmsg_set(err, errlen, "line %d: too many words", line_no);
            return -1;
        }
        if (nt == 0)
            continue;
        if (!have_magic) {
            int v;
            if (strcmp(tok[0], NN_DESC_FORMAT) || nt != 2 || parse_int(tok[1], &v)) {
                errmsg_set(err, errlen, "line %d: expected '%s %d' (description format and version), got '%s'",
                        line_no, NN_DESC_FORMAT, NN_DESC_VERSION, tok[0]);
                return -1;
            }
            if (v != NN_DESC_VERSION) {
                errmsg_set(err, errlen, "line %d: description version %d, this build reads version %d",
                        line_no, v, NN_DESC_VERSION);
                return -1;
            }
            have_magic = 1;
            continue;
        }
        if (strcmp(tok[0], "input") == 0) {
            if (have_input || nt != 4 || parse_int(tok[1], &net->in_c) || parse_int(tok[2], &net->in_h) ||
                parse_int(tok[3], &net->in_w) || !net->in_c || !net->in_h || !net->in_w) {
                errmsg_set(err, errlen, "line %d: expected one 'input C H W' with positive sizes", line_no);
                return -1;
            }
            have_input = 1;
            ps.ndim = 3;
            ps.shape[0] = net->in_c; ps.shape[1] = net->in_h; ps.shape[2] = net->in_w;
            ps.cur = add_act(&ps, 3, ps.shape);
            continue;
        }
        if (strcmp(tok[0], "encoder") == 0 || strcmp(tok[0], "head") == 0) {
            int sec = tok[0][0] == 'e' ? 1 : 2;
            if (nt != 1 || !have_input || sec != ps.section + 1) {
                errmsg_set(err, errlen, "line %d: sections come in the order: input, encoder, head "
                        "(each once, no options)", line_no);
                return -1;
            }
            if (ps.res_depth) {
                errmsg_set(err, errlen, "line %d: residual block not closed with 'end' before '%s'",
                        line_no, tok[0]);
                return -1;
            }
            if (sec == 2) {
                if (ps.ndim != 1) {
                    errmsg_set(err, errlen, "line %d: the encoder must end with a vector (N, F); add gap or flatten",
                            line_no);
                    return -1;
                }
                net->n_enc = net->nl;
                net->feat_act = ps.cur;
                net->feat_dim = ps.shape[0];
            }
            ps.section = sec;
            ps.sec_index = 0;
            continue;
        }
        int kind = -1;
        for (int k = 0; k < L_COUNT; k++)
            if (strcmp(tok[0], kind_name[k]) == 0)
                kind = k;
        if (kind < 0) {
            errmsg_set(err, errlen, "line %d: unknown layer '%s' (expected input, encoder, head, conv, bn, "
                    "relu, maxpool, gap, flatten, linear, l2norm, res, end)", line_no, tok[0]);
            return -1;
        }
        if (ps.section == 0) {
            errmsg_set(err, errlen, "line %d: layer '%s' before the 'encoder' line", line_no, tok[0]);
            return -1;
        }
        if (net->nl == cap) {
            cap = cap ? 2 * cap : 64;
            layer *nl = realloc(net->L, (size_t)cap * sizeof *nl);
            if (!nl) {
                errmsg_set(err, errlen, "out of memory");
                return -1;
            }
            net->L = nl;
        }
        layer *l = &net->L[net->nl++];
        memset(l, 0, sizeof *l);
        l->kind = kind;
        l->section = ps.section;
        l->index = ps.sec_index++;
        l->line = line_no;
        l->k = kind == L_MAXPOOL ? 2 : 3;
        l->s = -1;
        l->p = -1;
        l->bias = kind == L_LINEAR;
        if (parse_options(&ps, l, tok + 1, nt - 1))
            return -1;
        if (l->s < 0)
            l->s = kind == L_MAXPOOL ? l->k : 1;
        if (l->p < 0)
            l->p = kind == L_CONV ? l->k / 2 : 0;
        if (l->k < 1 || l->s < 1) {
            errmsg_set(err, errlen, "line %d: %s: k and s must be at least 1", line_no, tok[0]);
            return -1;
        }
        if (plan_layer(&ps, l))
            return -1;
    }
    if (!have_magic || !have_input || ps.section == 0) {
        errmsg_set(err, errlen, "description incomplete: needs the '%s %d' line, an 'input C H W' line "
                "and an 'encoder' section", NN_DESC_FORMAT, NN_DESC_VERSION);
        return -1;
    }
    if (ps.res_depth) {
        errmsg_set(err, errlen, "residual block not closed with 'end' at the end of the description");
        return -1;
    }
    if (ps.ndim != 1) {
        errmsg_set(err, errlen, "the network must end with a vector (N, F); add gap or flatten");
        return -1;
    }
    if (ps.section == 1) {
        net->n_enc = net->nl;
        net->feat_act = ps.cur;
        net->feat_dim = ps.shape[0];
    }
    net->out_act = ps.cur;
    net->out_dim = ps.shape[0];
    net->ws = -1;
    if (ps.ws_floats) {
        int sh[1] = { (int)ps.ws_floats };
        net->ws = nn_arena_add(&net->scratch, "workspace", 1, sh, 0);
    }
    return 0;
}

/* ------------------------------------------------------------ lifecycle */

void nn_net_init_params(nn_net *net, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < net->nl; i++) {
        layer *l = &net->L[i];
        if (l->kind == L_CONV || l->kind == L_LINEAR) {
            nn_tensor *w = &net->params.t[l->w];
            int fan_in = (int)(w->numel / (size_t)w->shape[0]);
            float bound = 1.0f / sqrtf((float)fan_in);
            for (size_t k = 0; k < w->numel; k++)
                w->data[k] = ((float)(splitmix64_next(&s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f) * bound;
            if (l->b >= 0) {
                nn_tensor *b = &net->params.t[l->b];
                for (size_t k = 0; k < b->numel; k++)
                    b->data[k] = ((float)(splitmix64_next(&s) >> 40) / (float)(1 << 24) * 2.0f - 1.0f) * bound;
            }
        } else if (l->kind == L_BN) {
            nn_tensor *g = &net->params.t[l->w], *b = &net->params.t[l->b];
            for (size_t k = 0; k < g->numel; k++) {
                g->data[k] = 1.0f;
                b->data[k] = 0.0f;
                net->params.t[l->rm].data[k] = 0.0f;
                net->params.t[l->rv].data[k] = 1.0f;
            }
        }
    }
}

nn_net *nn_net_new(const char *desc, int max_batch, char *err, size_t errlen)
{
    if (max_batch < 1) {
        errmsg_set(err, errlen, "max_batch must be at least 1, got %d", max_batch);
        return NULL;
    }
    if (strlen(desc) >= NN_MAX_DESC) {
        errmsg_set(err, errlen, "description longer than %d bytes", NN_MAX_DESC);
        return NULL;
    }
    nn_net *net = calloc(1, sizeof *net);
    char *text = strdup(desc);
    if (!net || !text || !(net->desc = strdup(desc))) {
        errmsg_set(err, errlen, "out of memory");
        goto fail;
    }
    net->max_batch = max_batch;
    if (parse_desc(net, text, err, errlen))
        goto fail;
    if (nn_arena_alloc(&net->params) || nn_arena_clone_layout(&net->grads, &net->params) ||
        nn_arena_alloc(&net->acts) || nn_arena_clone_layout(&net->dacts, &net->acts) ||
        nn_arena_alloc(&net->scratch) || !(net->grad_set = calloc((size_t)net->acts.n, 1))) {
        errmsg_set(err, errlen, "out of memory allocating the arenas (max_batch %d)", max_batch);
        goto fail;
    }
    nn_net_init_params(net, 1);
    free(text);
    return net;
fail:
    free(text);
    nn_net_destroy(&net);
    return NULL;
}

void nn_net_destroy(nn_net **self_p)
{
    nn_net *net = *self_p;
    if (!net)
        return;
    nn_arena_free(&net->params);
    nn_arena_free(&net->grads);
    nn_arena_free(&net->acts);
    nn_arena_free(&net->dacts);
    nn_arena_free(&net->scratch);
    free(net->grad_set);
    free(net->bn_ws);
    free(net->final_from);
    free(net->L);
    free(net->desc);
    free(net);
    *self_p = NULL;
}

/* ------------------------------------------------------------- running */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define ACT(i)  (net->acts.t[(i)].data)
#define DACT(i) (net->dacts.t[(i)].data)
#define PAR(i)  ((i) >= 0 ? net->params.t[(i)].data : NULL)
#define GRAD(i) ((i) >= 0 ? net->grads.t[(i)].data : NULL)
#define CACHE(l) (net->scratch.t[(l)->cache].data)
#define WS()    (net->ws >= 0 ? net->scratch.t[net->ws].data : NULL)

/* 0, or -1 when the synchronised batch norm's sum failed */
static int layer_forward(nn_net *net, layer *l, int n, int train)
{
    const float *in = ACT(l->in);
    float *out = ACT(l->out_act);
    size_t count = (size_t)n * img_numel(l->out_ndim, l->out_shape);
    switch (l->kind) {
    case L_CONV: {
        nn_conv_dims d;
        nn_conv_dims_init(&d, n, l->in_shape[0], l->in_shape[1], l->in_shape[2], l->out, l->k, l->s, l->p);
        nn_conv2d_forward(out, WS(), in, PAR(l->w), PAR(l->b), &d);
        break;
    }
    case L_BN: {
        nn_bn_dims d = { n, l->in_shape[0], l->in_ndim == 3 ? l->in_shape[1] * l->in_shape[2] : 1 };
        if (train && net->bn_sync.sum)
            return nn_batchnorm_sync_forward(out, CACHE(l), CACHE(l) + d.c, PAR(l->rm), PAR(l->rv),
                                             net->bn_ws, in, PAR(l->w), PAR(l->b), l->fused,
                                             &net->bn_sync, &d);
        (l->fused ? nn_batchnorm_relu_forward : nn_batchnorm_forward)(
            out, CACHE(l), CACHE(l) + d.c, PAR(l->rm), PAR(l->rv), in, PAR(l->w), PAR(l->b), train, &d);
        break;
    }
    case L_RELU:
        if (!l->fused)
            nn_relu_forward(out, in, count);
        break;
    case L_MAXPOOL: {
        nn_pool_dims d;
        nn_pool_dims_init(&d, n, l->in_shape[0], l->in_shape[1], l->in_shape[2], l->k, l->s);
        nn_maxpool_forward(out, (int32_t *)CACHE(l), in, &d);
        break;
    }
    case L_GAP:
        nn_avgpool_forward(out, in, n, l->in_shape[0], l->in_shape[1] * l->in_shape[2]);
        break;
    case L_LINEAR: {
        nn_linear_dims d = { n, l->in_shape[0], l->out };
        nn_linear_forward(out, in, PAR(l->w), PAR(l->b), &d);
        break;
    }
    case L_L2NORM:
        nn_l2norm_forward(out, CACHE(l), in, n, l->in_shape[0]);
        break;
    case L_END:
        nn_add_forward(out, in, ACT(l->skip), count);
        break;
    case L_FLATTEN:
    case L_RES:
        break;
    }
    return 0;
}

/* The first backward write of an activation's gradient overwrites it (1),
 * later ones add (0): no gradient buffer needs zeroing before backward. */
static int grad_first(nn_net *net, int act)
{
    int first = !net->grad_set[act];
    net->grad_set[act] = 1;
    return first;
}

/* 0, or -1 when the synchronised batch norm's sum failed */
static int layer_backward(nn_net *net, layer *l, int n)
{
    const float *in = ACT(l->in), *dout = DACT(l->out_act);
    float *din = l->in == 0 ? NULL : DACT(l->in);     /* no gradient for the images */
    size_t count = (size_t)n * img_numel(l->out_ndim, l->out_shape);
    if ((l->kind == L_RELU && l->fused) || l->kind == L_FLATTEN || l->kind == L_RES)
        return 0;                                     /* nothing to do, and dout may be din */
    if (!net->grad_set[l->out_act]) {                 /* an output nothing consumed: zero gradient */
        memset(DACT(l->out_act), 0, count * sizeof(float));
        net->grad_set[l->out_act] = 1;
    }
    int ow = din ? grad_first(net, l->in) : 0;
    switch (l->kind) {
    case L_CONV: {
        nn_conv_dims d;
        nn_conv_dims_init(&d, n, l->in_shape[0], l->in_shape[1], l->in_shape[2], l->out, l->k, l->s, l->p);
        nn_conv2d_backward_ow(din, GRAD(l->w), GRAD(l->b), dout, WS(), in, PAR(l->w), &d, ow);
        break;
    }
    case L_BN: {
        nn_bn_dims d = { n, l->in_shape[0], l->in_ndim == 3 ? l->in_shape[1] * l->in_shape[2] : 1 };
        if (net->bn_sync.sum)
            return nn_batchnorm_sync_backward_ow(din, GRAD(l->w), GRAD(l->b), net->bn_ws, dout,
                                                 l->fused ? ACT(l->out_act) : NULL, in, CACHE(l),
                                                 CACHE(l) + d.c, PAR(l->w), &net->bn_sync, &d, ow);
        nn_batchnorm_relu_backward_ow(din, GRAD(l->w), GRAD(l->b), dout, l->fused ? ACT(l->out_act) : NULL,
                                      in, CACHE(l), CACHE(l) + d.c, PAR(l->w), &d, ow);
        break;
    }
    case L_RELU:
        if (din)
            nn_relu_backward_ow(din, dout, ACT(l->out_act), count, ow);
        break;
    case L_MAXPOOL: {
        nn_pool_dims d;
        nn_pool_dims_init(&d, n, l->in_shape[0], l->in_shape[1], l->in_shape[2], l->k, l->s);
        if (din)
            nn_maxpool_backward_ow(din, dout, (const int32_t *)CACHE(l), &d, ow);
        break;
    }
    case L_GAP:
        if (din)
            nn_avgpool_backward_ow(din, dout, n, l->in_shape[0], l->in_shape[1] * l->in_shape[2], ow);
        break;
    case L_LINEAR: {
        nn_linear_dims d = { n, l->in_shape[0], l->out };
        nn_linear_backward_ow(din, GRAD(l->w), GRAD(l->b), dout, in, PAR(l->w), &d, ow);
        break;
    }
    case L_L2NORM:
        if (din)
            nn_l2norm_backward_ow(din, dout, ACT(l->out_act), CACHE(l), n, l->in_shape[0], ow);
        break;
    case L_END: {
        /* din of the images is never needed; the add's two inputs are activations */
        int ow_a = l->in == 0 ? grad_first(net, 0) : ow;
        int ow_b = grad_first(net, l->skip);
        nn_add_backward_ow(DACT(l->in), DACT(l->skip), dout, count, ow_a, ow_b);
        break;
    }
    }
    return 0;
}

static const float *run_forward(nn_net *net, const float *x, int n, int train, int upto)
{
    if (n < 1 || n > net->max_batch)
        return NULL;
    memcpy(ACT(0), x, (size_t)n * net->in_c * net->in_h * net->in_w * sizeof(float));
    for (int i = 0; i < upto; i++) {
        double t0 = net->profile ? now() : 0.0;
        if (layer_forward(net, &net->L[i], n, train)) {
            net->trained = 0;
            return NULL;
        }
        if (net->profile)
            net->L[i].t_fw += now() - t0;
    }
    net->n = n;
    net->trained = train && upto == net->nl;
    if (net->profile && train)
        net->prof_steps++;
    return ACT(upto == net->nl ? net->out_act : net->feat_act);
}

const float *nn_net_forward(nn_net *net, const float *x, int n, int train)
{
    return run_forward(net, x, n, train, net->nl);
}

const float *nn_net_forward_features(nn_net *net, const float *x, int n)
{
    return run_forward(net, x, n, 0, net->n_enc);
}

const float *nn_net_features(const nn_net *net)
{
    return net->acts.t[net->feat_act].data;
}

int nn_net_backward(nn_net *net, const float *dout)
{
    if (!net->trained)
        return -1;
    int n = net->n;
    memset(net->grad_set, 0, (size_t)net->acts.n);
    memcpy(DACT(net->out_act), dout, (size_t)n * net->out_dim * sizeof(float));
    net->grad_set[net->out_act] = 1;
    const nn_grad_ready *gr = &net->grad_ready;
    size_t handed = net->grads.size;   /* [handed, end) went out */
    for (int i = net->nl - 1; i >= 0; i--) {
        double t0 = net->profile ? now() : 0.0;
        if (layer_backward(net, &net->L[i], n))
            return -1;
        if (net->profile)
            net->L[i].t_bw += now() - t0;
        if (gr->ready && handed - net->final_from[i] >= gr->min_floats && net->final_from[i] < handed) {
            if (gr->ready(gr->ctx, net->grads.base + net->final_from[i], handed - net->final_from[i]))
                return -1;
            handed = net->final_from[i];
        } else if (gr->tick && handed < net->grads.size && gr->tick(gr->ctx)) {
            return -1;
        }
    }
    if (gr->ready && handed > 0 && gr->ready(gr->ctx, net->grads.base, handed))
        return -1;
    return 0;
}

/* Where layer l's gradients lie in the arena: from *lo to *hi; 0 when it
 * has no parameters. */
static int layer_grads_span(const nn_net *net, const layer *l, size_t *lo, size_t *hi)
{
    const int idx[] = { l->w, l->b, l->rm, l->rv };
    int any = 0;
    for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++) {
        if (idx[k] < 0)
            continue;
        const nn_tensor *t = &net->grads.t[idx[k]];
        if (!any || t->offset < *lo)
            *lo = t->offset;
        if (!any || t->offset + t->numel > *hi)
            *hi = t->offset + t->numel;
        any = 1;
    }
    return any;
}

int nn_net_set_grad_ready(nn_net *net, const nn_grad_ready *gr, char *err, size_t errlen)
{
    free(net->final_from);
    net->final_from = NULL;
    memset(&net->grad_ready, 0, sizeof net->grad_ready);
    if (!gr || !gr->ready)
        return 0;
    size_t *from = malloc((size_t)(net->nl > 0 ? net->nl : 1) * sizeof *from);
    if (!from) {
        errmsg_set(err, errlen, "gradients as they are ready: out of memory");
        return -1;
    }
    /* After layer i, [lo, end) is final when every gradient there belongs
     * to a layer >= i (the arena holds them in layer order), that is when
     * the layers below i end at or before lo; otherwise nothing more is
     * final until a lower layer makes it so. from[i] first holds where the
     * gradients of layers 0..i-1 end. */
    size_t a, b, below = 0;
    for (int i = 0; i < net->nl; i++) {
        from[i] = below;
        if (layer_grads_span(net, &net->L[i], &a, &b) && b > below)
            below = b;
    }
    size_t lo = net->grads.size, final = lo;
    for (int i = net->nl - 1; i >= 0; i--) {
        if (layer_grads_span(net, &net->L[i], &a, &b) && a < lo)
            lo = a;
        if (from[i] <= lo)
            final = lo;
        from[i] = final;
    }
    net->final_from = from;
    net->grad_ready = *gr;
    return 0;
}

int nn_net_set_bn_sync(nn_net *net, const nn_bn_sync *sync, char *err, size_t errlen)
{
    free(net->bn_ws);
    net->bn_ws = NULL;
    memset(&net->bn_sync, 0, sizeof net->bn_sync);
    if (!sync || !sync->sum)
        return 0;
    int widest = 0;
    for (int i = 0; i < net->nl; i++)
        if (net->L[i].kind == L_BN && net->L[i].in_shape[0] > widest)
            widest = net->L[i].in_shape[0];
    net->bn_ws = malloc(NN_BN_SYNC_WS(widest) * sizeof *net->bn_ws);
    if (!net->bn_ws) {
        errmsg_set(err, errlen, "synchronised batch norm: out of memory");
        return -1;
    }
    net->bn_sync = *sync;
    return 0;
}

void nn_net_zero_grad(nn_net *net)
{
    nn_arena_zero(&net->grads);
}

nn_arena *nn_net_params(nn_net *net) { return &net->params; }
nn_arena *nn_net_grads(nn_net *net) { return &net->grads; }
const char *nn_net_desc(const nn_net *net) { return net->desc; }
int nn_net_out_dim(const nn_net *net) { return net->out_dim; }
int nn_net_feat_dim(const nn_net *net) { return net->feat_dim; }
int nn_net_max_batch(const nn_net *net) { return net->max_batch; }

void nn_net_input_shape(const nn_net *net, int *c, int *h, int *w)
{
    *c = net->in_c;
    *h = net->in_h;
    *w = net->in_w;
}

size_t nn_net_bytes(const nn_net *net)
{
    return (net->params.size + net->grads.size + net->acts.size + net->dacts.size +
            net->scratch.size) * sizeof(float);
}

double nn_net_forward_macs(const nn_net *net)
{
    double macs = 0.0;
    for (int i = 0; i < net->nl; i++) {
        const layer *l = &net->L[i];
        if (l->kind == L_CONV)
            macs += (double)l->out_shape[0] * l->out_shape[1] * l->out_shape[2] *
                    l->in_shape[0] * l->k * l->k;
        else if (l->kind == L_LINEAR)
            macs += (double)l->out * l->in_shape[0];
    }
    return macs;
}

void nn_net_profile(nn_net *net, int on)
{
    net->profile = on;
    net->prof_steps = 0;
    for (int i = 0; i < net->nl; i++)
        net->L[i].t_fw = net->L[i].t_bw = 0.0;
}

void nn_net_profile_print(const nn_net *net, void *file, double scale)
{
    FILE *f = file;
    for (int i = 0; i < net->nl; i++) {
        const layer *l = &net->L[i];
        char sh[64];
        shape_text(sh, sizeof sh, l->out_ndim, l->out_shape);
        fprintf(f, "{\"layer\": %d, \"name\": \"%s.layers.%d\", \"kind\": \"%s\", \"out\": \"%s\", "
                "\"forward_ms\": %.3f, \"backward_ms\": %.3f}\n", i, section_name[l->section],
                l->index, kind_name[l->kind], sh, l->t_fw * scale * 1e3, l->t_bw * scale * 1e3);
    }
}
