/* liveness.c: who is silent among the peers that send beats (transport.h). */
#include "transport/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/console.h"
#include "proto/proto.h"

#define LIVENESS_MAX_PEERS 1024   /* the least recently heard one makes room beyond this */

typedef struct {
    char id[PROTO_MAX_NAME];
    double last;            /* console_now() of its last beat */
    int silent;             /* reported silent, not heard since */
} peer_t;

struct liveness {
    double silent_s, forget_s;
    int one_peer;
    double last_check;      /* console_now() of the last liveness_check, 0 = none */
    peer_t *peers;          /* (n) */
    int n, cap;
};

liveness_t *liveness_new(double silent_s, double forget_s, int one_peer)
{
    liveness_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->silent_s = silent_s;
    l->forget_s = forget_s;
    l->one_peer = one_peer;
    return l;
}

void liveness_destroy(liveness_t **l_p)
{
    if (l_p && *l_p) {
        free((*l_p)->peers);
        free(*l_p);
        *l_p = NULL;
    }
}

static peer_t *find(liveness_t *l, const char *id)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->peers[i].id, id) == 0)
            return &l->peers[i];
    return NULL;
}

static void drop(liveness_t *l, peer_t *p)
{
    *p = l->peers[--l->n];
}

/* A new entry for id (silent 0, last 0); NULL when out of memory. */
static peer_t *add(liveness_t *l, const char *id)
{
    if (l->n == LIVENESS_MAX_PEERS) {
        peer_t *oldest = &l->peers[0];
        for (int i = 1; i < l->n; i++)
            if (l->peers[i].last < oldest->last)
                oldest = &l->peers[i];
        drop(l, oldest);
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        peer_t *p = realloc(l->peers, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        l->peers = p;
        l->cap = cap;
    }
    peer_t *p = &l->peers[l->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    return p;
}

void liveness_beat(liveness_t *l, const char *id, double now)
{
    peer_t *p = find(l, id);
    if (!p && l->one_peer && l->n > 0) {
        /* another peer took the place: it ends the outage of the one before */
        p = &l->peers[0];
        if (p->silent)
            console_log("%s heard after %.0f s of silence (%s before it)", id, now - p->last, p->id);
        snprintf(p->id, sizeof p->id, "%s", id);
        p->silent = 0;
    }
    if (!p && !(p = add(l, id)))
        return;
    if (p->silent)
        console_log("%s back after %.0f s", p->id, now - p->last);
    p->silent = 0;
    p->last = now;
}

void liveness_gone(liveness_t *l, const char *id)
{
    peer_t *p = find(l, id);
    if (p)
        drop(l, p);
}

int liveness_check(liveness_t *l, double now)
{
    int silent = 0;
    if (l->last_check > 0 && now - l->last_check > l->silent_s) {
        /* this process was not looking (stopped itself, or busy): the beats of
         * that time may still be on their way to it, so nobody is called
         * silent for it; the quiet of each peer counts from now on */
        for (int i = 0; i < l->n; i++)
            if (!l->peers[i].silent)
                l->peers[i].last = now;
    }
    l->last_check = now;
    for (int i = 0; i < l->n;) {
        peer_t *p = &l->peers[i];
        double quiet = now - p->last;
        if (!p->silent && quiet >= l->silent_s) {
            console_log("%s silent for %.0f s (stopped or hung?)", p->id, quiet);
            p->silent = 1;
        }
        if (p->silent && l->forget_s > 0 && quiet >= l->forget_s) {
            console_log("%s silent for %.0f s: no longer watched", p->id, quiet);
            drop(l, p);
            continue;
        }
        silent += p->silent;
        i++;
    }
    return silent;
}

int liveness_silent(const liveness_t *l, const char *id)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->peers[i].id, id) == 0)
            return l->peers[i].silent;
    return 0;
}
