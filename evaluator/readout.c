/* evaluator/readout: the network that computes a readout of a frozen encoder
 * (readout.h). */
#include "evaluator/readout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg/errmsg.h"
#include "evaluator/stages.h"
#include "nn/tensor.h"

#define FLATTEN_LINE "flatten\n"
#define POOL_LINE    "maxpool k=2 s=2\n"

int eval_readout_parse(eval_readout *r, const char *text, char *err, size_t errlen)
{
    if (!strcmp(text, "pooled")) {
        r->stage = EVAL_READOUT_POOLED;
        return 0;
    }
    if (!strcmp(text, "maps")) {
        r->stage = EVAL_READOUT_MAPS;
        return 0;
    }
    if (!strncmp(text, "stage:", 6)) {
        char *end;
        errno = 0;
        long k = strtol(text + 6, &end, 10);
        if (!errno && end != text + 6 && !*end && k >= 1 && k <= EVAL_MAX_STAGES) {
            r->stage = (int)k;
            return 0;
        }
    }
    errmsg_set(err, errlen, "readout '%s': expected pooled, maps or stage:K with K in 1..%d", text,
               EVAL_MAX_STAGES);
    return -1;
}

int eval_views_parse(int *views, const char *text, char *err, size_t errlen)
{
    static const int all[] = { EVAL_VIEWS_ONE, EVAL_VIEWS_FLIP, EVAL_VIEWS_FLIP_SHIFT };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(text, eval_views_name(all[i]))) {
            *views = all[i];
            return 0;
        }
    errmsg_set(err, errlen, "'%s': expected one, flip or flip-shift", text);
    return -1;
}

const char *eval_views_name(int views)
{
    return views == EVAL_VIEWS_FLIP ? "flip" : views == EVAL_VIEWS_FLIP_SHIFT ? "flip-shift" : "one";
}

void eval_view_images(const float *x, size_t n, int c, int h, int w, int v, float *out)
{
    static const int move[5][2] = { { 0, 0 }, { 1, 0 }, { -1, 0 }, { 0, 1 }, { 0, -1 } };
    int s = EVAL_VIEW_SHIFT(h), mirror = v & 1, pos = (v / 2) % 5;
    int dx = move[pos][0] * s, dy = move[pos][1] * s;
    size_t hw = (size_t)h * w;
    /* output pixel (r, q) reads (r - dy, q - dx) of the (mirrored) image, clamped to its edges */
    for (size_t i = 0; i < n * (size_t)c; i++) {
        const float *src = x + i * hw;
        float *dst = out + i * hw;
        for (int r = 0; r < h; r++) {
            int sr = r - dy < 0 ? 0 : r - dy >= h ? h - 1 : r - dy;
            const float *row = src + (size_t)sr * w;
            float *o = dst + (size_t)r * w;
            for (int q = 0; q < w; q++) {
                int sq = q - dx < 0 ? 0 : q - dx >= w ? w - 1 : q - dx;
                o[q] = row[mirror ? w - 1 - sq : sq];
            }
        }
    }
}

void eval_readout_name(const eval_readout *r, char *buf, size_t len)
{
    if (r->stage == EVAL_READOUT_POOLED)
        snprintf(buf, len, "pooled");
    else if (r->stage == EVAL_READOUT_MAPS)
        snprintf(buf, len, "maps");
    else
        snprintf(buf, len, "stage:%d", r->stage);
}

int eval_copy_params(nn_net *dst, nn_net *src, char *err, size_t errlen)
{
    nn_arena *d = nn_net_params(dst), *s = nn_net_params(src);
    for (int i = 0; i < d->n; i++) {
        nn_tensor *t = &d->t[i], *from = nn_arena_find(s, t->name);
        if (!from || from->numel != t->numel) {
            errmsg_set(err, errlen, "parameter %s not found in the whole network", t->name);
            return -1;
        }
        memcpy(t->data, from->data, t->numel * sizeof *t->data);
    }
    return 0;
}

nn_net *eval_readout_net(nn_net *net, const eval_readout *r, int batch, int *same, char *err,
                         size_t errlen)
{
    *same = 0;
    if (r->stage == EVAL_READOUT_POOLED) {
        *same = 1;
        return NULL;
    }
    eval_stage_list st;
    if (eval_stages_find(nn_net_desc(net), &st, err, errlen))
        return NULL;
    int i = r->stage == EVAL_READOUT_MAPS ? st.n - 1 : r->stage - 1;
    if (i >= st.n) {
        errmsg_set(err, errlen, "readout stage:%d: the encoder has %d stages", r->stage, st.n);
        return NULL;
    }
    /* the 2x2 pools that bring the maps under the limit, and room for them */
    int pools = 0;
    for (int ph = st.h[i], pw = st.w[i]; (size_t)st.c[i] * ph * pw > EVAL_READOUT_MAX_DIM && ph >= 2 && pw >= 2;
         ph /= 2, pw /= 2)
        pools++;
    size_t len = strlen(nn_net_desc(net)) + sizeof FLATTEN_LINE + (size_t)pools * strlen(POOL_LINE);
    char *desc = malloc(len);
    if (!desc) {
        errmsg_set(err, errlen, "out of memory");
        return NULL;
    }
    if (eval_stage_desc(nn_net_desc(net), &st, i, desc, len, err, errlen)) {
        free(desc);
        return NULL;
    }
    size_t tail = strlen(desc) - strlen(FLATTEN_LINE);
    for (int k = 0; k < pools; k++) {
        memcpy(desc + tail, POOL_LINE FLATTEN_LINE, sizeof POOL_LINE FLATTEN_LINE);
        tail += strlen(POOL_LINE);
    }
    char nerr[1024];
    nn_net *cut = nn_net_new(desc, batch, nerr, sizeof nerr);
    free(desc);
    if (!cut) {
        errmsg_set(err, errlen, "readout network: %s", nerr);
        return NULL;
    }
    if (eval_copy_params(cut, net, nerr, sizeof nerr)) {
        errmsg_set(err, errlen, "readout network: %s", nerr);
        nn_net_destroy(&cut);
        return NULL;
    }
    return cut;
}
