/* The pool's life: every event about workers enters here (channel messages,
 * exits, the heartbeat's checks) and goes to the generation that owns the
 * worker; what a generation reports back decides the rest. A reload is a
 * new generation N+1 that is promoted once every worker of it is ready,
 * after which N retires; if N+1 cannot load the app it retires instead and
 * N serves on. settle() is the one place that looks at the whole after
 * each event: promotion, rollback, the end of a hand-over, respawns. */
#include "master.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "procfs.h"
#include "sbuf.h"
#include "slot.h"
#include "status.h"
#include "unavailable.h"

ev_tstamp load_timeout(const struct master *m)
{
    return m->cfg.timeout > SUP_MIN_LOAD_TIMEOUT ? m->cfg.timeout : SUP_MIN_LOAD_TIMEOUT;
}

uint64_t mono_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int lifecycle_target(const struct master *m)
{
    return m->serving ? m->serving->target : 0;
}

uint64_t lifecycle_errors(const struct master *m)
{
    uint64_t n = m->counters.retired_errors;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            n += slot_errors(&m->w[i]);
    return n;
}

uint64_t lifecycle_requests(const struct master *m)
{
    uint64_t n = m->counters.retired_requests;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            n += slot_served(&m->w[i]);
    return n;
}

bool lifecycle_serves(const struct master *m)
{
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE && worker_ready(&m->w[i]))
            return true;
    return false;
}

/* No worker takes connections and the serving generation is backing off
 * after failed starts: nothing will serve soon, so appstackd answers 503
 * until a worker is ready. A first start that is merely slow, or a respawn
 * after a kill, is waited for as before. */
static void update_unavailable(struct master *m)
{
    bool on = !m->stopping && m->serving && m->serving->failures > 0 && !lifecycle_serves(m);
    ev_tstamp wait = m->serving ? m->serving->next_spawn - ev_now(m->loop) : 0;

    unavailable_set(m, on, wait);
}

static bool all_gone(const struct master *m)
{
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            return false;
    for (const struct generation *g = m->gens; g; g = g->next)
        if (g->tmpl.state != T_NONE)
            return false;
    return true;
}

static void spawn_later(struct master *m, ev_tstamp delay)
{
    ev_timer_stop(m->loop, &m->spawn_w);
    ev_timer_set(&m->spawn_w, delay, 0);
    ev_timer_start(m->loop, &m->spawn_w);
}

static void send_status(struct master *m)
{
    char text[256];

    status_summary(m, text, sizeof text);
    notify_status(m, text);
}

/* Retiring generations whose last worker has gone. */
static void forget_empty(struct master *m)
{
    struct generation *g = m->gens, *next;

    for (; g; g = next) {
        next = g->next;
        if (g->phase == G_RETIRING && gen_empty(g) && g != m->serving && g != m->pending)
            gen_free(g);
    }
}

static char *reload_reply(struct master *m, bool ok, const char *error)
{
    struct sbuf b = { 0 };

    if (ok)
        sbuf_printf(&b, "reloaded: generation %u serves with %d workers\n", m->serving->id, m->serving->target);
    else if (lifecycle_serves(m))
        sbuf_printf(&b, "reload failed; generation %u keeps serving\n", m->serving->id);
    else
        sbuf_printf(&b, "reload failed; no worker serves: generation %u has none ready\n", m->serving->id);
    sbuf_printf(&b, "%s%s", m->reload_note ? m->reload_note : "", error ? error : "");
    return sbuf_take(&b);
}

/* The end of a reload, whichever way it went, for everyone who waits. */
static void reload_done(struct master *m, struct waiter **waiters, bool ok, const char *error)
{
    char *text = reload_reply(m, ok, error);

    if (ok)
        m->counters.reloads_ok++;
    else
        m->counters.reloads_failed++;
    if (m->ready_sent)
        notify_ready();     /* also after a failure: systemd must leave "reloading" */
    waiters_done(waiters, ok, text);
    free(text);
    free(m->reload_note);
    m->reload_note = NULL;
}

/* The pending generation failed: it goes, the serving one stays. */
static void rollback(struct master *m)
{
    struct generation *g = m->pending;
    char line[256], why[128];
    const char *error = g->error;

    if (!error) {
        snprintf(why, sizeof why, "the new generation did not load the app within %g s", load_timeout(m));
        error = why;
    }
    as_err("reload failed, generation %u keeps serving: %s", m->serving->id,
           status_last_line(error, line, sizeof line));
    m->pending = NULL;
    m->serving->frozen = false;
    gen_retire(g, false);
    reload_done(m, &g->waiters, false, error);
}

/* Every worker of the pending generation is ready: it serves, and every
 * older generation finishes its requests and goes. */
static void promote(struct master *m)
{
    struct generation *g = m->pending;
    int old = 0;

    for (struct generation *o = m->gens; o; o = o->next)
        if (o != g && o->phase != G_RETIRING) {
            old += gen_count(o, false);
            gen_retire(o, false);
        }
    as_notice("reloaded: generation %u serves with %d workers; %d old workers finish their requests", g->id,
              g->target, old);
    g->phase = G_SERVING;
    g->fallback = false;
    m->serving = g;
    m->ready_sent = true;
    m->handover_deadline = ev_now(m->loop) + SUP_HANDOVER_WAIT;
}

/* An old worker that is idle may still be waiting on the listening sockets,
 * and a connection made then would meet the old code. The reload is done
 * once every old worker is in a request (it will not wait on the sockets
 * again), has left them (stopping) or is gone: from then on every new
 * connection reaches the new code. */
static bool handed_over(struct master *m)
{
    if (ev_now(m->loop) >= m->handover_deadline)
        return true;
    for (struct generation *g = m->gens; g; g = g->next)
        if (g->phase == G_RETIRING && !gen_left_sockets(g))
            return false;
    return true;
}

static void start_reload(struct master *m);

static void reload_complete(struct master *m)
{
    struct generation *g = m->pending;

    m->pending = NULL;
    reload_done(m, &g->waiters, true, NULL);
    if (m->reload_again) {
        m->reload_again = false;
        start_reload(m);
    }
}

/* The first generation, complete: systemd hears READY=1 once. */
static void first_complete(struct master *m)
{
    m->serving->phase = G_SERVING;
    if (m->ready_sent)
        return;
    m->ready_sent = true;
    notify_ready();
    as_notice("all %d workers of generation %u are ready", m->serving->target, m->serving->id);
}

static void settle(struct master *m)
{
    struct generation *p = m->pending;
    ev_tstamp wait;

    forget_empty(m);
    if (m->stopping) {
        update_unavailable(m);
        if (all_gone(m))
            ev_break(m->loop, EVBREAK_ALL);
        return;
    }
    if (p && p->phase == G_LOADING) {
        gen_maintain(p);
        if (p->error || ev_now(m->loop) > p->deadline)
            rollback(m);
        else if (gen_count(p, true) >= p->target)
            promote(m);
    }
    if (m->pending && m->pending->phase == G_SERVING && handed_over(m))
        reload_complete(m);
    if (m->serving->phase == G_LOADING && gen_count(m->serving, true) >= m->serving->target)
        first_complete(m);
    wait = gen_maintain(m->serving);
    if (wait > 0)
        spawn_later(m, wait);
    forget_empty(m);
    update_unavailable(m);
    send_status(m);
}

static void outcome(struct master *m, struct generation *g, enum gen_outcome o)
{
    switch (o) {
    case GO_NONE:
    case GO_EMPTY:      /* forget_empty() */
        break;
    case GO_FAILED:
        if (g == m->pending)
            rollback(m);
        break;
    }
}

static void deliver(struct master *m, struct worker *w, const struct wevent *ev)
{
    struct generation *g = w->gen;

    outcome(m, g, gen_event(g, w, ev));
}

static void deliver_template(struct master *m, struct generation *g, const struct tevent *ev)
{
    outcome(m, g, gen_template_event(g, ev));
}

/* One message from the worker; false when there was none. */
static bool read_message(struct master *m, struct worker *w)
{
    static char buf[65536];
    struct wevent ev = { .kind = WEV_READY };
    ssize_t n = worker_recv(w, buf, sizeof buf);

    if (n <= 0)
        return false;
    if (!strcmp(buf, AS_MSG_READY)) {
        deliver(m, w, &ev);
    } else if (!strncmp(buf, AS_MSG_PID, strlen(AS_MSG_PID))) {
        long pid;
        if (as_parse_long(buf + strlen(AS_MSG_PID), 1, INT32_MAX, &pid))
            worker_forked(w, (pid_t)pid);
    } else if (!strncmp(buf, AS_MSG_FAILED, strlen(AS_MSG_FAILED))) {
        ev.kind = WEV_FAILED;
        ev.text = buf + strlen(AS_MSG_FAILED);
        deliver(m, w, &ev);
    } else {
        worker_log(w, LOG_WARNING, "worker %d (pid %d) sent an unknown message (%zd bytes)", w->id, (int)w->pid, n);
    }
    return true;
}

/* A worker its template was asked to fork that never said its pid: the
 * closed channel is all there will be of it (worker/template.c). */
static void check_unforked(struct master *m, struct worker *w)
{
    struct wevent ev = { .kind = WEV_NOT_FORKED };

    if (w->state != W_FREE && !w->pid && w->chan < 0)
        deliver(m, w, &ev);
}

static void chan_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    struct master *m = w->m;

    (void)loop;
    (void)revents;
    read_message(m, w);
    check_unforked(m, w);
    settle(m);
}

/* One message from the template; false when there was none. */
static bool read_template_message(struct master *m, struct template *t)
{
    static char buf[65536];
    struct tevent ev = { .kind = TEV_READY };
    ssize_t n = template_recv(t, buf, sizeof buf);

    if (n <= 0)
        return false;
    if (!strncmp(buf, AS_MSG_FAILED, strlen(AS_MSG_FAILED))) {
        ev.kind = TEV_FAILED;
        ev.text = buf + strlen(AS_MSG_FAILED);
    } else if (strcmp(buf, AS_MSG_READY)) {
        as_warn("the template (pid %d) sent an unknown message (%zd bytes)", (int)t->pid, n);
        return true;
    }
    deliver_template(m, t->gen, &ev);
    return true;
}

static void template_chan_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct template *t = io->data;

    (void)loop;
    (void)revents;
    read_template_message(t->m, t);
    settle(t->m);
}

/* Generations are made here only, so their templates' news comes here. */
static struct generation *new_generation(struct master *m, unsigned id, int target, bool fallback)
{
    struct generation *g = gen_new(m, id, target, fallback);

    if (g)
        template_init(&g->tmpl, g, template_chan_cb);
    return g;
}

static struct generation *template_owner(struct master *m, pid_t pid)
{
    for (struct generation *g = m->gens; g; g = g->next)
        if (g->tmpl.state != T_NONE && g->tmpl.pid == pid)
            return g;
    return NULL;
}

void lifecycle_child_exited(struct master *m, pid_t pid, int status)
{
    struct worker *w = worker_by_pid(m, pid);
    struct generation *g;
    struct wevent ev = { .kind = WEV_EXITED, .status = status };
    struct tevent tev = { .kind = TEV_EXITED, .status = status };

    if (!w && (g = template_owner(m, pid))) {
        /* Its channel may still hold FAILED and the traceback. */
        while (g->tmpl.chan >= 0 && read_template_message(m, &g->tmpl))
            ;
        deliver_template(m, g, &tev);
        settle(m);
        return;
    }
    if (!w) {
        /* A forked worker may end before its PID message was read. */
        for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
            if (m->w[i].state == W_FREE || m->w[i].pid)
                continue;
            while (m->w[i].chan >= 0 && !m->w[i].pid && read_message(m, &m->w[i]))
                ;
            check_unforked(m, &m->w[i]);
        }
        w = worker_by_pid(m, pid);
    }
    if (!w)
        return;     /* not ours: an orphan appstackd adopted as a subreaper */
    /* The channel may still hold the last messages (FAILED) sent before exit. */
    while (w->chan >= 0 && read_message(m, w))
        ;
    deliver(m, w, &ev);
    settle(m);
}

/* The event the scoreboard, the clock and (when RSS_DUE) /proc have for W
 * now, if any. */
static bool check(const struct worker *w, ev_tstamp now, uint64_t now_us, bool rss_due, struct wevent *ev,
                  struct reqview *req)
{
    double limit = w->m->cfg.timeout;
    uint64_t last;

    memset(ev, 0, sizeof *ev);
    if (w->state == W_LOADING && now - w->started > load_timeout(w->m)) {
        ev->kind = WEV_LOAD_TIMEOUT;
    } else if (w->state == W_STOPPING && now > w->deadline) {
        ev->kind = WEV_DEADLINE;
    } else if ((worker_ready(w) || w->state == W_STOPPING) && limit > 0 &&
               slot_requests(w, now_us, req, 1) == 1 && req->age > limit) {
        ev->kind = WEV_TIMEOUT;
        ev->req = req;
    } else if (worker_ready(w) && limit > 0 && now_us > (last = slot_last_turn(w)) && now_us - last > limit * 1e6) {
        /* Stuck outside a request: native code, a thread that holds the
         * GIL, a deadlock, SIGSTOP. The worker's loop wakes at least every
         * timeout/4 when idle (appstack-worker), so this is no false alarm. */
        ev->kind = WEV_HEARTBEAT;
        ev->age = (double)(now_us - last) / 1e6;
    } else if ((w->state == W_SERVING && slot_wants_recycle(w)) || (w->state == W_RECYCLING && !w->replaced_by)) {
        ev->kind = WEV_RECYCLE;     /* (again, while it has no replacement) */
        ev->cause = END_MAX_REQUESTS;
    } else if (w->state == W_SERVING && rss_due && (ev->rss = proc_rss(w->pid)) > (long long)w->m->cfg.max_rss) {
        ev->kind = WEV_RECYCLE;
        ev->cause = END_MAX_RSS;
    } else {
        return false;
    }
    return true;
}

void lifecycle_tick(struct master *m)
{
    ev_tstamp now = ev_now(m->loop);
    uint64_t now_us = mono_usec();
    struct reqview req;
    struct wevent ev;
    /* RSS costs a read of /proc per worker: once a second is enough. */
    bool rss_due = m->cfg.max_rss > 0 && now - m->rss_checked >= SUP_RSS_EVERY;

    struct tevent tev;

    if (rss_due)
        m->rss_checked = now;
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE && check(&m->w[i], now, now_us, rss_due, &ev, &req))
            deliver(m, &m->w[i], &ev);
    for (struct generation *g = m->gens; g; g = g->next)
        if (template_check(&g->tmpl, now, &tev))
            deliver_template(m, g, &tev);
    settle(m);
}

void lifecycle_spawn_due(struct master *m)
{
    settle(m);
}

static void start_reload(struct master *m)
{
    struct generation *g;
    char *errors = NULL;
    int workers = 0, target;

    as_notice("reloading: reading %s", m->config_path);
    if (m->ready_sent)
        notify_reloading(); /* before the first READY=1 systemd is still starting us */
    if (!reload_config(m, &errors, &workers)) {
        const char *why = errors ? errors : "invalid configuration\n";
        char line[256];
        as_err("reload failed, generation %u keeps serving: %s", m->serving->id,
               status_last_line(why, line, sizeof line));
        reload_done(m, &m->next_waiters, false, why);
        free(errors);
        return;
    }
    target = workers ? workers : m->serving->target;   /* else a scale made at run time stays */
    g = new_generation(m, ++m->last_generation, target, true);
    if (!g) {
        reload_done(m, &m->next_waiters, false, "out of memory\n");
        return;
    }
    as_notice("reloading: starting generation %u (%d workers)", g->id, target);
    g->waiters = NULL;
    while (m->next_waiters) {
        struct waiter *wt = m->next_waiters;
        waiter_remove(wt);
        waiter_add(&g->waiters, wt);
    }
    m->serving->frozen = true;
    m->pending = g;
    gen_maintain(g);
    if (g->error)
        rollback(m);
}

void lifecycle_reload(struct master *m, struct waiter *wt)
{
    if (m->stopping) {
        if (wt)
            wt->done(wt, false, "appstackd is stopping\n");
        return;
    }
    if (m->pending && m->pending->phase == G_LOADING) {
        if (wt)
            waiter_add(&m->pending->waiters, wt);   /* joins it: same answer */
        return;
    }
    if (wt)
        waiter_add(&m->next_waiters, wt);
    if (m->pending) {
        /* New code may have landed since the running reload read it. */
        m->reload_again = true;
        return;
    }
    start_reload(m);
    settle(m);
}

bool lifecycle_scale(struct master *m, int target)
{
    if (target < 1 || target > AS_MAX_WORKERS || m->stopping)
        return false;
    if (target != m->serving->target)
        as_notice("scaling from %d to %d workers", m->serving->target, target);
    m->serving->target = target;
    if (m->pending)
        m->pending->target = target;
    settle(m);
    return true;
}

void lifecycle_stop(struct master *m, bool fast)
{
    if (m->stopping && (m->fast_stop || !fast))
        return;
    if (!m->stopping) {
        as_notice(fast ? "fast stop: telling all workers to exit now"
                       : "graceful stop: telling all workers to finish their requests");
        notify_stopping();
        if (!fast)
            master_refuse_new(m);   /* before the workers hear of it: they serve the queue */
    }
    m->stopping = true;
    m->fast_stop = fast;
    ev_timer_stop(m->loop, &m->spawn_w);
    if (m->pending) {
        struct generation *g = m->pending;
        m->pending = NULL;
        reload_done(m, &g->waiters, false, "appstackd is stopping\n");
    }
    m->reload_again = false;
    if (m->next_waiters)
        reload_done(m, &m->next_waiters, false, "appstackd is stopping\n");
    for (struct generation *g = m->gens; g; g = g->next) {
        g->frozen = true;
        gen_retire(g, fast);
    }
    settle(m);      /* turns the 503 responder off: it watches the sockets */
    if (!fast)
        master_close_bound_sockets(m);
}

/* The stacks of a stuck worker have come (or it did not answer): now it
 * is killed. */
static void kill_dump_done(struct dump_waiter *dw, struct worker *w, const char *stacks, const char *missing)
{
    struct wevent ev = { .kind = WEV_STACKS, .text = stacks, .missing = missing };

    (void)dw;
    deliver(w->m, w, &ev);
    settle(w->m);
}

void lifecycle_init(struct master *m)
{
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        struct worker *w = &m->w[i];
        w->m = m;
        w->chan = -1;
        ev_init(&w->chan_w, chan_cb);
        dump_init(w);
        w->kill_dump.done = kill_dump_done;
    }
}

void lifecycle_start(struct master *m)
{
    m->last_generation = 1;
    m->serving = new_generation(m, 1, m->cfg.workers, false);
    if (!m->serving) {
        as_err("out of memory");
        ev_break(m->loop, EVBREAK_ALL);
        return;
    }
    settle(m);
}

void lifecycle_free(struct master *m)
{
    while (m->gens)
        gen_free(m->gens);
    m->serving = m->pending = NULL;
    free(m->last_failure.text);
    free(m->reload_note);
}
