/* evaluator/stages: stage ends of an encoder description (stages.h). */
#include "errmsg/errmsg.h"
#include "evaluator/stages.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 16

/* Splits one line (comment removed) into words; returns their count. */
static int words(const char *line, size_t len, char buf[256], char *w[MAX_WORDS])
{
    if (len > 255)
        len = 255;
    memcpy(buf, line, len);
    buf[len] = 0;
    char *hash = strchr(buf, '#');
    if (hash)
        *hash = 0;
    int n = 0;
    for (char *tok = strtok(buf, " \t\r"); tok && n < MAX_WORDS; tok = strtok(NULL, " \t\r"))
        w[n++] = tok;
    return n;
}

int eval_stages_find(const char *desc, eval_stage_list *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    int line_no = 0, in_encoder = 0, depth = 0, convs = 0, seen_encoder = 0;
    int C = 0, H = 0, W = 0;      /* shape of the current activation */
    for (const char *p = desc; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        line_no++;
        char buf[256], *w[MAX_WORDS];
        int nw = words(p, len, buf, w);
        p += len + (eol ? 1 : 0);
        if (nw == 0)
            continue;
        if (!strcmp(w[0], "input") && nw == 4) {
            C = atoi(w[1]); H = atoi(w[2]); W = atoi(w[3]);
            continue;
        }
        if (!strcmp(w[0], "encoder")) {
            in_encoder = seen_encoder = 1;
            continue;
        }
        if (!strcmp(w[0], "head"))
            break;
        if (!in_encoder)
            continue;
        if (!strcmp(w[0], "res")) { depth++; continue; }
        if (!strcmp(w[0], "end")) { depth--; continue; }
        int is_conv = !strcmp(w[0], "conv"), is_pool = !strcmp(w[0], "maxpool");
        int out = 0, k = is_pool ? 2 : 3, s = -1, pad = -1;
        for (int i = 1; i < nw; i++) {
            if (!strncmp(w[i], "out=", 4)) out = atoi(w[i] + 4);
            else if (!strncmp(w[i], "k=", 2)) k = atoi(w[i] + 2);
            else if (!strncmp(w[i], "s=", 2)) s = atoi(w[i] + 2);
            else if (!strncmp(w[i], "p=", 2)) pad = atoi(w[i] + 2);
        }
        if (s < 1)
            s = is_pool ? k : 1;
        if (pad < 0)
            pad = is_conv ? k / 2 : 0;
        int cut = is_pool || !strcmp(w[0], "gap") || !strcmp(w[0], "flatten") || (is_conv && s > 1);
        if (cut && depth == 0 && convs > 0 && st->n < EVAL_MAX_STAGES) {
            st->line[st->n] = line_no;
            st->c[st->n] = C; st->h[st->n] = H; st->w[st->n] = W;
            st->n++;
            convs = 0;
        }
        if (is_conv) {
            convs++;
            C = out;
            H = (H + 2 * pad - k) / s + 1;
            W = (W + 2 * pad - k) / s + 1;
        } else if (is_pool) {
            H = (H - k) / s + 1;
            W = (W - k) / s + 1;
        }
    }
    if (!seen_encoder) {
        errmsg_set(err, errlen, "network description has no encoder section");
        return -1;
    }
    if (st->n == 0) {
        errmsg_set(err, errlen, "the encoder has no convolutional stage (no conv before a pool, a strided "
                "conv, gap or flatten)");
        return -1;
    }
    return 0;
}

int eval_stage_desc(const char *desc, const eval_stage_list *st, int i, char *buf, size_t len,
                    char *err, size_t errlen)
{
    if (i < 0 || i >= st->n) {
        errmsg_set(err, errlen, "stage %d out of range (0..%d)", i, st->n - 1);
        return -1;
    }
    const char *p = desc;
    for (int line = 1; line < st->line[i] && p; line++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p) {
        errmsg_set(err, errlen, "stage %d ends at line %d, past the description's end", i, st->line[i]);
        return -1;
    }
    size_t head = (size_t)(p - desc);
    if (head + sizeof "flatten\n" > len) {
        errmsg_set(err, errlen, "description of stage %d longer than %zu bytes", i, len);
        return -1;
    }
    memcpy(buf, desc, head);
    memcpy(buf + head, "flatten\n", sizeof "flatten\n");
    return 0;
}

void eval_attention_maps(float *maps, const float *a, int count, int c, int h, int w)
{
    size_t hw = (size_t)h * w;
    for (int n = 0; n < count; n++) {
        float *m = maps + (size_t)n * hw;
        memset(m, 0, hw * sizeof *m);
        for (int ch = 0; ch < c; ch++) {
            const float *p = a + ((size_t)n * c + ch) * hw;
            for (size_t q = 0; q < hw; q++)
                m[q] += p[q] * p[q];
        }
        for (size_t q = 0; q < hw; q++)
            m[q] /= (float)c;
    }
}
