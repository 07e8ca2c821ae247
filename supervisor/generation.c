/* A generation keeps its workers (generation.h): starts them up to its
 * target, with a backoff after failed starts, replaces the ones that end,
 * and pairs a worker to be recycled with its replacement. */
#include "master.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "slot.h"

struct generation *gen_new(struct master *m, unsigned id, int target, bool fallback)
{
    struct generation *g = calloc(1, sizeof *g), **p;

    if (!g)
        return NULL;
    g->m = m;
    g->id = id;
    g->target = target;
    g->fallback = fallback;
    g->preload = m->cfg.preload;
    g->phase = G_LOADING;
    if (fallback)
        g->deadline = ev_now(m->loop) + load_timeout(m);
    for (p = &m->gens; *p; p = &(*p)->next)
        ;
    *p = g;
    return g;
}

void gen_free(struct generation *g)
{
    struct generation **p;

    for (p = &g->m->gens; *p && *p != g; p = &(*p)->next)
        ;
    if (*p)
        *p = g->next;
    waiters_done(&g->waiters, false, "appstackd is stopping\n");
    template_free(&g->tmpl);
    free(g->error);
    free(g);
}

bool gen_empty(const struct generation *g)
{
    return !g->workers && g->tmpl.state == T_NONE;
}

static void adopt(struct generation *g, struct worker *w)
{
    struct worker **p;

    for (p = &g->workers; *p; p = &(*p)->gen_next)
        ;
    w->gen_next = NULL;
    *p = w;
}

static void disown(struct generation *g, struct worker *w)
{
    struct worker **p;

    for (p = &g->workers; *p && *p != w; p = &(*p)->gen_next)
        ;
    if (*p)
        *p = w->gen_next;
    w->gen_next = NULL;
    w->gen = NULL;
}

/* Live workers (ready_only false) count a worker being replaced once: its
 * replacement stands for it. */
int gen_count(const struct generation *g, bool ready_only)
{
    int n = 0;

    for (const struct worker *w = g->workers; w; w = w->gen_next) {
        if (ready_only ? worker_ready(w) : worker_live(w) && !w->replaced_by)
            n++;
    }
    return n;
}

static bool any_loading(const struct generation *g)
{
    for (const struct worker *w = g->workers; w; w = w->gen_next)
        if (w->state == W_LOADING)
            return true;
    return false;
}

bool gen_left_sockets(const struct generation *g)
{
    for (const struct worker *w = g->workers; w; w = w->gen_next)
        if (w->state != W_KILLED && slot_waits_on_sockets(w))
            return false;
    return true;
}

static ev_tstamp backoff(int failures)
{
    ev_tstamp d = SUP_BACKOFF_FIRST * pow(2, failures > 1 ? failures - 1 : 0);
    return d < SUP_BACKOFF_MAX ? d : SUP_BACKOFF_MAX;
}

/* The last failure anyone saw, for `supctl status` and STATUS=. */
static void note_failure(struct generation *g, const char *text)
{
    struct master *m = g->m;

    free(m->last_failure.text);
    m->last_failure.text = strdup(text);
    m->last_failure.when = ev_now(m->loop);
}

/* One more failed start: the next attempt waits. */
static void count_failure(struct generation *g, const char *text)
{
    if (text)
        note_failure(g, text);
    g->failures++;
    g->next_spawn = ev_now(g->m->loop) + backoff(g->failures);
    as_warn("%d failed worker start%s in a row; next attempt in %.1f s", g->failures, g->failures > 1 ? "s" : "",
            backoff(g->failures));
}

static void fail(struct generation *g, const char *why)
{
    if (!g->error)
        g->error = strdup(why);
}

/* Whether a new start may be tried now (backing off: one at a time). */
static bool may_start(const struct generation *g)
{
    if (g->frozen || g->phase == G_RETIRING || (g->preload && g->tmpl.state != T_READY))
        return false;
    return g->failures == 0 || (ev_now(g->m->loop) >= g->next_spawn && !any_loading(g));
}

static struct worker *start_worker(struct generation *g)
{
    struct worker *w = worker_alloc(g->m);
    int chan, dump;
    pid_t pid;

    if (!w)
        return NULL;
    if (g->preload)
        pid = spawn_fork(g->m, w, g->tmpl.chan, g->id, &chan, &dump) ? 0 : -1;
    else
        pid = spawn_process(g->m, w, g->id, &chan, &dump);
    if (pid < 0)
        return NULL;
    worker_started(w, g, pid, chan, dump);
    adopt(g, w);
    return w;
}

/* A serving worker to be recycled gets a replacement in its own generation;
 * it serves on until that one is READY. A replacement that fails to load
 * leaves it serving; the next try waits for the backoff. */
static void start_replacement(struct generation *g, struct worker *old)
{
    struct worker *r;

    if (!may_start(g) || g->fallback)
        return;
    r = start_worker(g);
    if (!r) {
        count_failure(g, "cannot fork a worker (see the log)");
        return;
    }
    r->replaces = old;
    old->replaced_by = r;
    if (old->end == END_MAX_REQUESTS)
        worker_log(old, LOG_INFO, "worker %d (pid %d) reached max_requests (%llu requests): worker %d (pid %d) "
                   "starts to replace it", old->id, (int)old->pid, (unsigned long long)slot_served(old), r->id,
                   (int)r->pid);
    else
        worker_log(old, LOG_INFO, "worker %d (pid %d) is over max_rss: worker %d (pid %d) starts to replace it",
                   old->id, (int)old->pid, r->id, (int)r->pid);
}

static void became_ready(struct generation *g, struct worker *w)
{
    struct worker *old = w->replaces;
    struct wevent ev = { .kind = WEV_REPLACED };

    g->failures = 0;    /* the first worker that gets ready ends the backoff */
    g->next_spawn = 0;
    if (!old)
        return;
    worker_step(old, &ev);
    old->replaced_by = NULL;
    w->replaces = NULL;
}

/* The pair ends with either of them: a replacement whose old worker is gone
 * is an ordinary worker; an old worker whose replacement is gone waits for
 * another. */
static void unpair(struct worker *w)
{
    if (w->replaced_by)
        w->replaced_by->replaces = NULL;
    if (w->replaces)
        w->replaces->replaced_by = NULL;
    w->replaced_by = w->replaces = NULL;
}

static enum gen_outcome exited(struct generation *g, struct worker *w)
{
    struct master *m = g->m;
    bool counts = g->phase != G_RETIRING && !g->fallback;

    unpair(w);
    disown(g, w);
    m->counters.retired_requests += slot_served(w);
    m->counters.retired_errors += slot_errors(w);
    if (counts && w->end >= END_CRASH && w->end <= LAST_RESTART_CAUSE)
        m->counters.restarts[w->end]++;
    if (g->fallback && g->phase == G_LOADING && w->end != END_RETIRED)
        fail(g, w->error ? w->error : "a worker of the new generation ended");
    else if (w->start_failed && counts)
        count_failure(g, w->error);
    free(w->error);
    w->error = NULL;
    w->pid = 0;
    if (g->error)
        return GO_FAILED;
    return g->phase == G_RETIRING && gen_empty(g) ? GO_EMPTY : GO_NONE;
}

enum gen_outcome gen_event(struct generation *g, struct worker *w, const struct wevent *ev)
{
    /* A worker its template has not forked within the load timeout: the
     * template no longer forks. Its death closes the worker's channel. */
    if (ev->kind == WEV_LOAD_TIMEOUT && !w->pid && w->state == W_LOADING) {
        struct tevent te = { .kind = TEV_STUCK, .worker = w->id };
        template_step(&g->tmpl, &te);
    }
    switch (worker_step(w, ev)) {
    case WO_NONE:
        break;
    case WO_READY:
        became_ready(g, w);
        break;
    case WO_LOAD_FAILED:
        note_failure(g, w->error ? w->error : "worker failed to load the app");
        if (g->fallback && g->phase == G_LOADING) {
            fail(g, w->error ? w->error : "worker failed to load the app");
            return GO_FAILED;
        }
        break;
    case WO_RECYCLE:
        start_replacement(g, w);
        break;
    case WO_EXITED:
        return exited(g, w);
    }
    return GO_NONE;
}

enum gen_outcome gen_template_event(struct generation *g, const struct tevent *ev)
{
    struct template *t = &g->tmpl;
    bool counts = g->phase != G_RETIRING && !g->fallback;

    switch (template_step(t, ev)) {
    case TO_NONE:
        break;
    case TO_READY:
        g->failures = 0;    /* a template that loads ends the backoff, as a worker does */
        g->next_spawn = 0;
        break;
    case TO_LOAD_FAILED:
        note_failure(g, t->error ? t->error : "the template failed to load the app");
        if (g->fallback && g->phase == G_LOADING) {
            fail(g, t->error ? t->error : "the template failed to load the app");
            return GO_FAILED;
        }
        break;
    case TO_EXITED:
        if (g->fallback && g->phase == G_LOADING && !t->retired)
            fail(g, t->error ? t->error : "the template of the new generation ended");
        else if (t->start_failed && counts)
            count_failure(g, t->error);
        if (g->error)
            return GO_FAILED;
        return g->phase == G_RETIRING && gen_empty(g) ? GO_EMPTY : GO_NONE;
    }
    return GO_NONE;
}

/* Preload: workers fork from the template, so it must be ready first; one
 * that is gone is started again at once (after a failed start, when the
 * backoff allows), so that the next respawn is a fork again. Returns
 * whether workers can start now; *WAIT: the backoff left. */
static bool template_ready(struct generation *g, ev_tstamp now, ev_tstamp *wait)
{
    struct template *t = &g->tmpl;

    if (!g->preload || t->state == T_READY)
        return true;
    if (t->state != T_NONE)
        return false;   /* loading or going: its news calls us again */
    if (g->failures > 0 && now < g->next_spawn) {
        *wait = g->next_spawn - now;
        return false;
    }
    if (!template_start(t)) {
        if (g->fallback) {
            fail(g, "cannot start the template of the new generation (see the log)");
        } else {
            count_failure(g, "cannot start the template (see the log)");
            *wait = g->next_spawn - now;
        }
    }
    return false;
}

static struct worker *newest(struct generation *g)
{
    struct worker *best = NULL;

    for (struct worker *w = g->workers; w; w = w->gen_next)
        if (worker_live(w) && !w->replaced_by && (!best || w->id > best->id))
            best = w;
    return best;
}

ev_tstamp gen_maintain(struct generation *g)
{
    struct wevent retire = { .kind = WEV_RETIRE };
    ev_tstamp now = ev_now(g->m->loop), wait = 0;
    int live;

    if (g->frozen || g->phase == G_RETIRING)
        return 0;
    live = gen_count(g, false);
    for (; live > g->target; live--) {
        struct worker *w = newest(g), *old = w->replaces;
        unpair(w);
        worker_step(w, &retire);
        if (old)
            worker_step(old, &retire);  /* a hand-over pair is one worker: both go */
    }
    if (!template_ready(g, now, &wait))
        return wait;
    if (live >= g->target)
        return 0;
    if (g->failures > 0) {
        /* Backing off: one attempt at a time, never a fork storm. */
        if (any_loading(g))
            return 0;
        if (now < g->next_spawn)
            return g->next_spawn - now;
        if (!start_worker(g))
            count_failure(g, "cannot fork a worker (see the log)");
        return g->failures > 0 && !any_loading(g) ? g->next_spawn - now : 0;
    }
    for (; live < g->target; live++)
        if (!start_worker(g)) {
            if (g->fallback) {
                fail(g, "cannot start the workers of the new generation (see the log)");
                return 0;
            }
            count_failure(g, "cannot fork a worker (see the log)");
            return g->next_spawn - now;
        }
    return 0;
}

void gen_retire(struct generation *g, bool quick)
{
    struct wevent ev = { .kind = quick ? WEV_QUIT : WEV_RETIRE };
    struct tevent te = { .kind = TEV_RETIRE };

    g->phase = G_RETIRING;
    template_step(&g->tmpl, &te);   /* no more workers to fork */
    for (struct worker *w = g->workers; w; w = w->gen_next) {
        unpair(w);
        worker_step(w, &ev);
    }
}

void waiter_add(struct waiter **list, struct waiter *wt)
{
    wt->next = *list;
    if (*list)
        (*list)->prevp = &wt->next;
    wt->prevp = list;
    *list = wt;
}

void waiter_remove(struct waiter *wt)
{
    if (!wt->prevp)
        return;
    *wt->prevp = wt->next;
    if (wt->next)
        wt->next->prevp = wt->prevp;
    wt->next = NULL;
    wt->prevp = NULL;
}

void waiters_done(struct waiter **list, bool ok, const char *text)
{
    while (*list) {
        struct waiter *wt = *list;
        waiter_remove(wt);
        wt->done(wt, ok, text);
    }
}
