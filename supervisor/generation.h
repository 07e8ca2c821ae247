/* A generation: the workers started from one reading of the config and the
 * app's code. It owns its workers, keeps them at its target, backs off
 * when they fail to start, and hands a recycled worker over to its
 * replacement. Its phase goes loading -> serving -> retiring; lifecycle.c
 * decides when (first start, reload, promotion, rollback, stop). */
#ifndef APPSTACK_SUP_GENERATION_H
#define APPSTACK_SUP_GENERATION_H

#include <ev.h>
#include <stdbool.h>

#include "template.h"
#include "worker.h"

enum gen_phase {
    G_LOADING,      /* not every worker has loaded the app yet */
    G_SERVING,      /* promoted: the generation that serves */
    G_RETIRING,     /* superseded, failed or stopping: its workers finish and go */
};

/* Someone waiting for a generation to be done (a `supctl reload`). */
struct waiter {
    struct waiter *next, **prevp;
    void (*done)(struct waiter *wt, bool ok, const char *text);
};

struct generation {
    struct master *m;
    struct generation *next;    /* the master's list, oldest first */
    unsigned id;
    enum gen_phase phase;
    int target;
    /* Started by a reload while another generation serves: any failure
     * before promotion fails the whole generation (the older one serves on)
     * instead of backing off. */
    bool fallback;
    /* No new workers (respawn, replacement): a reload is about to replace
     * this generation, or appstackd stops. */
    bool frozen;
    ev_tstamp deadline;         /* fallback: serving by then, else failed */
    struct worker *workers;     /* every worker it owns, in start order */
    /* [app] preload as this generation read it: its workers are forked by
     * its template, which lives as long as the generation may start
     * workers (template_init() by lifecycle.c, which owns the callback). */
    bool preload;
    struct template tmpl;
    int failures;               /* consecutive failed starts */
    ev_tstamp next_spawn;       /* backoff: no start before this */
    char *error;                /* fallback: why it failed */
    struct waiter *waiters;     /* told when the reload that made it is done */
};

/* What the master must act on after an event. */
enum gen_outcome {
    GO_NONE,
    GO_FAILED,      /* a fallback generation cannot serve: g->error */
    GO_EMPTY,       /* a retiring generation's last worker is gone */
};

struct generation *gen_new(struct master *m, unsigned id, int target, bool fallback);
void gen_free(struct generation *g);
enum gen_outcome gen_event(struct generation *g, struct worker *w, const struct wevent *ev);
enum gen_outcome gen_template_event(struct generation *g, const struct tevent *ev);
/* Starts or retires workers toward the target; returns the s after which
 * it wants to be called again (backoff), 0 when it does not. */
ev_tstamp gen_maintain(struct generation *g);
/* Every worker finishes its requests (QUICK: exits now) and goes. */
void gen_retire(struct generation *g, bool quick);
int gen_count(const struct generation *g, bool ready_only);
/* No worker of this retiring generation waits on the listening sockets. */
bool gen_left_sockets(const struct generation *g);
/* No worker and no template process left. */
bool gen_empty(const struct generation *g);

void waiter_add(struct waiter **list, struct waiter *wt);
void waiter_remove(struct waiter *wt);
/* Tells and removes every waiter of LIST. */
void waiters_done(struct waiter **list, bool ok, const char *text);

#endif
