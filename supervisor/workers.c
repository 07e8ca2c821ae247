/* The life of workers after fork: READY/FAILED messages, exits, timeouts,
 * respawn with backoff, scaling. workers_maintain() is the one place that
 * decides to start or retire workers of the serving generation. */
#include "master.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

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

static struct as_slot *slot_of(const struct worker *w)
{
    return &w->m->sb->slot[w - w->m->w];
}

/* A message about W with its APPSTACK_WORKER/GENERATION fields (SPEC.md). */
static void wlog(const struct worker *w, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void wlog(const struct worker *w, int prio, const char *fmt, ...)
{
    char *msg = NULL, f_id[48], f_gen[48];
    const char *fields[] = { f_id, f_gen };
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);   /* a traceback may be long: no fixed buffer */
    va_end(ap);
    snprintf(f_id, sizeof f_id, "APPSTACK_WORKER=%d", w->id);
    snprintf(f_gen, sizeof f_gen, "APPSTACK_GENERATION=%u", w->generation);
    as_log_fields(prio, n >= 0 ? msg : fmt, fields, 2);
    if (n >= 0)
        free(msg);
}

void worker_signal(struct worker *w, int sig)
{
    if (w->pid > 0 && kill(w->pid, sig) < 0 && errno != ESRCH)
        as_warn("cannot signal worker %d (pid %d): %s", w->id, (int)w->pid, strerror(errno));
}

static void worker_kill(struct worker *w)
{
    worker_signal(w, SIGKILL);
    w->killed = true;
}

/* Ends a max_requests hand-over that W takes part in, from either side. */
static void unpair(struct worker *w)
{
    if (w->replaced_by) {
        w->replaced_by->replaces = NULL;
        w->replaced_by = NULL;
    }
    if (w->replaces) {
        w->replaces->replaced_by = NULL;
        w->replaces = NULL;
    }
}

void worker_retire(struct worker *w, ev_tstamp grace)
{
    unpair(w);
    if (w->state == W_STOPPING)
        return;
    w->deadline = ev_now(w->m->loop) + grace;
    w->state = W_STOPPING;
    worker_signal(w, SIGTERM);
}

void worker_release(struct worker *w)
{
    unpair(w);
    if (w->state == W_LOADING) {
        w->state = W_STOPPING;  /* nothing in flight: no need to wait */
        worker_kill(w);
    } else {
        worker_retire(w, w->m->cfg.graceful_timeout);
    }
}

static void close_chan(struct worker *w)
{
    if (w->chan < 0)
        return;
    ev_io_stop(w->m->loop, &w->chan_w);
    close(w->chan);
    w->chan = -1;
}

/* Live workers (ready_only false) count a worker being recycled once: its
 * replacement stands for it, so nothing is retired or started for the pair. */
int workers_count(struct master *m, unsigned generation, bool ready_only)
{
    int n = 0;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        const struct worker *w = &m->w[i];
        if (!ready_only && w->replaced_by)
            continue;
        if (w->generation == generation && (w->state == W_READY || (!ready_only && w->state == W_LOADING)))
            n++;
    }
    return n;
}

static bool any_loading(const struct master *m, unsigned generation)
{
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].generation == generation && m->w[i].state == W_LOADING)
            return true;
    return false;
}

bool workers_all_gone(struct master *m)
{
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            return false;
    return true;
}

uint64_t workers_total_requests(struct master *m)
{
    uint64_t n = m->retired_requests;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            n += m->sb->slot[i].requests;
    return n;
}

static const char *last_line(const char *text, char *buf, size_t n)
{
    const char *end = text + strlen(text), *start;

    while (end > text && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    for (start = end; start > text && start[-1] != '\n'; start--)
        ;
    snprintf(buf, n, "%.*s", (int)(end - start), start);
    return buf;
}

static ev_tstamp backoff(int failures)
{
    ev_tstamp d = SUP_BACKOFF_FIRST * pow(2, failures > 1 ? failures - 1 : 0);
    return d < SUP_BACKOFF_MAX ? d : SUP_BACKOFF_MAX;
}

void workers_send_status(struct master *m)
{
    char text[256], why[160];

    if (m->fail.count > 0 && m->fail.text)
        snprintf(text, sizeof text, "workers fail to start (%d in a row): %s", m->fail.count,
                 last_line(m->fail.text, why, sizeof why));
    else
        snprintf(text, sizeof text, "%d workers, generation %u, %llu requests%s",
                 workers_count(m, m->generation, true), m->generation,
                 (unsigned long long)workers_total_requests(m), m->reload.active ? ", reloading" : "");
    notify_status(m, text);
}

static void record_failure(struct master *m, const char *text)
{
    free(m->fail.text);
    m->fail.text = strdup(text);
    m->fail.when = ev_now(m->loop);
}

/* One more failed start of the serving generation: the next attempt waits. */
static void count_failure(struct master *m, const char *text)
{
    if (text)
        record_failure(m, text);
    m->fail.count++;
    m->next_spawn = ev_now(m->loop) + backoff(m->fail.count);
    as_warn("%d failed worker start%s in a row; next attempt in %.1f s", m->fail.count,
            m->fail.count > 1 ? "s" : "", backoff(m->fail.count));
}

/* A replacement is serving: the worker it replaces finishes and exits. */
static void take_over(struct worker *w)
{
    struct worker *old = w->replaces;

    unpair(w);
    if (old->state != W_READY)
        return;
    wlog(old, LOG_INFO, "worker %d (pid %d) recycled after %llu requests: worker %d (pid %d) serves instead",
         old->id, (int)old->pid, (unsigned long long)slot_of(old)->requests, w->id, (int)w->pid);
    worker_retire(old, w->m->cfg.graceful_timeout);
}

static void on_ready(struct worker *w)
{
    struct master *m = w->m;

    if (w->state != W_LOADING)
        return;
    w->state = W_READY;
    w->ready_at = ev_now(m->loop);
    wlog(w, LOG_INFO, "worker %d (pid %d) ready, generation %u, loaded in %.2f s", w->id, (int)w->pid,
         w->generation, ev_now(m->loop) - w->started);
    if (w->replaces)
        take_over(w);
    if (m->reload.active && w->generation == m->reload.generation) {
        reload_worker_ready(m, w);
    } else if (w->generation == m->generation) {
        m->fail.count = 0;
        m->next_spawn = 0;
        if (!m->first_ready && workers_count(m, m->generation, true) >= m->target) {
            m->first_ready = true;
            notify_ready();
            as_notice("all %d workers of generation %u are ready", m->target, m->generation);
        }
        workers_maintain(m);
    }
    workers_send_status(m);
}

static void on_failed(struct worker *w, const char *text)
{
    struct master *m = w->m;

    wlog(w, LOG_ERR, "worker %d (pid %d) cannot load the app:\n%s", w->id, (int)w->pid, text);
    record_failure(m, text);
    w->failed = true;
    if (m->reload.active && w->generation == m->reload.generation)
        reload_worker_failed(m, w, text);
}

void worker_chan_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    static char buf[65536];
    struct worker *w = io->data;
    ssize_t n = recv(w->chan, buf, sizeof buf - 1, MSG_DONTWAIT);

    (void)loop;
    (void)revents;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_chan(w);  /* the worker is gone or closed it; its exit tells the rest */
        return;
    }
    buf[n] = '\0';
    if (!strcmp(buf, AS_MSG_READY))
        on_ready(w);
    else if (!strncmp(buf, AS_MSG_FAILED, strlen(AS_MSG_FAILED)))
        on_failed(w, buf + strlen(AS_MSG_FAILED));
    else
        wlog(w, LOG_WARNING, "worker %d (pid %d) sent an unknown message (%zd bytes)", w->id, (int)w->pid, n);
}

static void describe_exit(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, n, "ended with wait status %d", status);
}

/* Whether a death is the app's (or the worker's) own failure, which backs
 * off the next start. A kill from outside (an operator's kill -9, the OOM
 * killer, a stray SIGTERM) says nothing about the app: the worker is
 * replaced at once. Kills the master sends itself are handled by their
 * callers (load timeout: w->failed). */
static bool failed_by_itself(const struct worker *w, int status)
{
    if (w->failed)
        return true;
    if (WIFEXITED(status))
        return WEXITSTATUS(status) != 0;
    if (!WIFSIGNALED(status))
        return false;
    switch (WTERMSIG(status)) {
    case SIGSEGV: case SIGABRT: case SIGBUS: case SIGFPE: case SIGILL:
        return true;
    default:
        return false;
    }
}

/* A worker of the serving generation died before it had loaded the app. */
static void exited_loading(struct worker *w, int status, const char *how)
{
    struct master *m = w->m;
    char text[256];

    if (m->reload.active && w->generation == m->reload.generation) {
        snprintf(text, sizeof text, "worker %d %s before it had loaded the app", w->id, how);
        reload_worker_failed(m, w, text);
        return;
    }
    if (w->generation != m->generation)
        return;
    if (!failed_by_itself(w, status)) {
        wlog(w, LOG_WARNING, "worker %d (pid %d) %s while it loaded the app; starting another at once", w->id,
             (int)w->pid, how);
        return;
    }
    wlog(w, LOG_ERR, "worker %d (pid %d) %s before it had loaded the app", w->id, (int)w->pid, how);
    snprintf(text, sizeof text, "worker %s before it had loaded the app", how);
    count_failure(m, w->failed ? NULL : text);   /* keep the traceback it sent */
}

static void exited_ready(struct worker *w, int status, const char *how)
{
    struct master *m = w->m;
    char text[256];

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        wlog(w, LOG_INFO, "worker %d (pid %d) exited after %llu requests; replacing it", w->id, (int)w->pid,
             (unsigned long long)slot_of(w)->requests);
    } else {
        wlog(w, LOG_ERR, "worker %d (pid %d) %s; replacing it", w->id, (int)w->pid, how);
        /* A crash right after READY is most likely the app's doing too. */
        if (ev_now(m->loop) - w->ready_at < SUP_STABLE_UPTIME && w->generation == m->generation &&
            !w->killed && failed_by_itself(w, status)) {
            snprintf(text, sizeof text, "worker %s right after it got ready", how);
            count_failure(m, text);
        }
    }
    if (m->reload.active && w->generation == m->reload.generation) {
        snprintf(text, sizeof text, "worker %d of the new generation %s", w->id, how);
        reload_worker_failed(m, w, text);
    }
}

void worker_exited(struct master *m, pid_t pid, int status)
{
    struct worker *w = NULL;
    struct as_slot *s;
    enum worker_state was;
    char how[64];

    for (int i = 0; i < AS_SCOREBOARD_SLOTS && !w; i++)
        if (m->w[i].state != W_FREE && m->w[i].pid == pid)
            w = &m->w[i];
    if (!w)
        return;     /* not a worker (nothing else is forked; be safe) */
    s = slot_of(w);
    describe_exit(status, how, sizeof how);
    was = w->state;
    /* The channel may still hold the last message (FAILED) sent before exit. */
    if (w->chan >= 0)
        worker_chan_cb(m->loop, &w->chan_w, EV_READ);
    close_chan(w);
    unpair(w);          /* an old worker's replacement becomes an ordinary one */
    w->state = W_FREE;  /* before the handlers below, which count workers */
    if (was == W_LOADING)
        exited_loading(w, status, how);
    else if (was == W_READY)
        exited_ready(w, status, how);
    else
        wlog(w, LOG_INFO, "worker %d (pid %d) stopped (%s)", w->id, (int)w->pid, how);
    m->retired_requests += s->requests;
    memset(s, 0, sizeof *s);
    w->pid = 0;
    if (m->stopping) {
        if (workers_all_gone(m))
            ev_break(m->loop, EVBREAK_ALL);
        return;
    }
    workers_maintain(m);
    workers_send_status(m);
}

static struct worker *newest(struct master *m, unsigned generation)
{
    struct worker *best = NULL;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        struct worker *w = &m->w[i];
        if (w->generation == generation && (w->state == W_LOADING || w->state == W_READY) && !w->replaced_by &&
            (!best || w->id > best->id))
            best = w;
    }
    return best;
}

static void spawn_later(struct master *m, ev_tstamp delay)
{
    ev_timer_stop(m->loop, &m->spawn_w);
    ev_timer_set(&m->spawn_w, delay, 0);
    ev_timer_start(m->loop, &m->spawn_w);
}

void workers_maintain(struct master *m)
{
    int live;
    ev_tstamp now = ev_now(m->loop);

    /* During a reload the old generation is on its way out and the new one
     * is started by reload.c; the result of the reload decides. */
    if (m->stopping || m->reload.active)
        return;
    live = workers_count(m, m->generation, false);
    for (; live > m->target; live--) {
        struct worker *w = newest(m, m->generation), *old = w->replaces;
        worker_release(w);
        if (old)
            worker_release(old);    /* a hand-over pair is one worker: both go */
    }
    if (live >= m->target)
        return;
    if (m->fail.count > 0) {
        /* Backing off: one attempt at a time, never a fork storm. */
        if (any_loading(m, m->generation))
            return;
        if (now < m->next_spawn) {
            spawn_later(m, m->next_spawn - now);
            return;
        }
        spawn_worker(m, m->generation);
        return;
    }
    for (; live < m->target; live++)
        if (!spawn_worker(m, m->generation)) {
            count_failure(m, "cannot fork a worker (see the log)");
            spawn_later(m, m->next_spawn - now);
            return;
        }
}

bool workers_scale(struct master *m, int target)
{
    if (target < 1 || target > AS_MAX_WORKERS)
        return false;
    if (target != m->target)
        as_notice("scaling from %d to %d workers", m->target, target);
    m->target = target;
    workers_maintain(m);
    workers_send_status(m);
    return true;
}

static void check_request_timeout(struct worker *w, uint64_t now_us)
{
    struct as_slot *s = slot_of(w);
    uint64_t start = s->request_start;
    double ran, limit = w->m->cfg.timeout;
    char method[sizeof s->method + 1], path[sizeof s->path + 1];

    if (limit <= 0 || !start || now_us < start || (ran = (double)(now_us - start) / 1e6) <= limit)
        return;
    snprintf(method, sizeof method, "%.*s", (int)sizeof s->method, s->method);
    snprintf(path, sizeof path, "%.*s", (int)sizeof s->path, s->path);
    worker_kill(w);
    wlog(w, LOG_ERR, "worker %d (pid %d) killed: request %s %s ran for %.1f s (timeout %g s)", w->id, (int)w->pid,
         method, path, ran, limit);
}

/* Whether a new start may be tried now (backoff: one at a time). */
static bool may_spawn(struct master *m)
{
    if (m->fail.count == 0)
        return true;
    return ev_now(m->loop) >= m->next_spawn && !any_loading(m, m->generation);
}

/* A serving worker at its max_requests gets a replacement in its own
 * generation; it serves on until that one is READY (take_over). A
 * replacement that fails to load leaves it serving; the next heartbeat
 * after the backoff tries again. */
static void check_recycle(struct worker *w)
{
    struct master *m = w->m;
    struct worker *r;

    if (w->state != W_READY || w->killed || w->replaced_by || w->generation != m->generation ||
        slot_of(w)->state != AS_SLOT_RECYCLE || m->stopping || m->reload.active || !may_spawn(m))
        return;
    r = spawn_worker(m, m->generation);
    if (!r) {
        count_failure(m, "cannot fork a worker (see the log)");
        return;
    }
    r->replaces = w;
    w->replaced_by = r;
    wlog(w, LOG_INFO, "worker %d (pid %d) reached max_requests (%llu requests): worker %d (pid %d) starts to "
         "replace it", w->id, (int)w->pid, (unsigned long long)slot_of(w)->requests, r->id, (int)r->pid);
}

void workers_heartbeat(struct master *m)
{
    uint64_t now_us = mono_usec();
    ev_tstamp now = ev_now(m->loop);
    char text[128];

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        struct worker *w = &m->w[i];
        if (w->state == W_FREE || w->killed)
            continue;
        if (w->state == W_LOADING && now - w->started > load_timeout(m)) {
            snprintf(text, sizeof text, "worker did not load the app within %g s", load_timeout(m));
            wlog(w, LOG_ERR, "worker %d (pid %d) killed: it did not load the app within %g s", w->id, (int)w->pid,
                 load_timeout(m));
            record_failure(m, text);
            w->failed = true;
            worker_kill(w);
        } else if (w->state == W_STOPPING && now > w->deadline) {
            wlog(w, LOG_WARNING, "worker %d (pid %d) killed: still running %g s after it was told to stop", w->id,
                 (int)w->pid, m->fast_stop ? SUP_FAST_STOP_GRACE : m->cfg.graceful_timeout);
            worker_kill(w);
        } else if (w->state != W_LOADING) {
            check_request_timeout(w, now_us);
            check_recycle(w);
        }
    }
    reload_check_deadline(m);
    reload_check_handover(m);
    workers_send_status(m);
}
