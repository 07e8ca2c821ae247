/* A worker's life, one state at a time (worker.h). worker_step() is the
 * only place its state changes; it sends the signals and logs the line
 * each change deserves, and leaves to the generation what the change means
 * for the pool. */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exits.h"
#include "log.h"
#include "sbuf.h"
#include "slot.h"
#include "stdio_capture.h"

#define MAX_EXTRA_FIELDS 6

/* MSG with the worker's fields and EXTRA ones. */
static void log_entry(const struct worker *w, int prio, const char *msg, const char *const *extra, int n_extra)
{
    char f_id[48], f_gen[48];
    const char *fields[2 + MAX_EXTRA_FIELDS] = { f_id, f_gen };

    snprintf(f_id, sizeof f_id, "APPSTACK_WORKER=%d", w->id);
    snprintf(f_gen, sizeof f_gen, "APPSTACK_GENERATION=%u", worker_generation(w));
    for (int i = 0; i < n_extra && i < MAX_EXTRA_FIELDS; i++)
        fields[2 + i] = extra[i];
    as_log_fields(prio, msg, fields, 2 + (n_extra < MAX_EXTRA_FIELDS ? n_extra : MAX_EXTRA_FIELDS));
}

void worker_log(const struct worker *w, int prio, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);   /* a traceback may be long: no fixed buffer */
    va_end(ap);
    log_entry(w, prio, n >= 0 ? msg : fmt, NULL, 0);
    if (n >= 0)
        free(msg);
}

int worker_slot(const struct worker *w)
{
    return (int)(w - w->m->w);
}

unsigned worker_generation(const struct worker *w)
{
    return w->gen ? w->gen->id : 0;
}

bool worker_live(const struct worker *w)
{
    return w->state == W_LOADING || w->state == W_SERVING || w->state == W_RECYCLING;
}

bool worker_ready(const struct worker *w)
{
    return w->state == W_SERVING || w->state == W_RECYCLING;
}

struct worker *worker_by_pid(struct master *m, pid_t pid)
{
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE && m->w[i].pid == pid)
            return &m->w[i];
    return NULL;
}

struct worker *worker_alloc(struct master *m)
{
    struct worker *w = NULL;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS && !w; i++)
        if (m->w[i].state == W_FREE)
            w = &m->w[i];
    if (!w) {
        as_err("cannot start a worker: all %d scoreboard slots are in use", AS_SCOREBOARD_SLOTS);
        return NULL;
    }
    for (int id = 1; !w->id; id++) {
        bool used = false;
        for (int i = 0; i < AS_SCOREBOARD_SLOTS && !used; i++)
            used = m->w[i].state != W_FREE && m->w[i].id == id;
        if (!used)
            w->id = id;
    }
    /* Cleared now, before the process exists: a worker (above all one
     * forked from the template, which has no exec to do) can write its
     * state and heartbeat and send READY before appstackd runs again on a
     * loaded machine, and a reset after that would leave a ready worker
     * without a heartbeat, killed at the next check as stuck. */
    slot_reset(w, 0);
    return w;
}

void worker_started(struct worker *w, struct generation *g, pid_t pid, int chan, int dump)
{
    w->gen = g;
    w->state = W_LOADING;
    w->end = END_NONE;
    w->start_failed = false;
    w->error = NULL;
    w->pid = pid;
    w->pending_sig = 0;
    w->chan = chan;
    w->started = ev_now(w->m->loop);
    w->ready_at = w->deadline = 0;
    w->replaced_by = w->replaces = NULL;
    if (pid)
        slot_of(w)->pid = pid;
    ev_io_set(&w->chan_w, chan, EV_READ);
    w->chan_w.data = w;
    ev_io_start(w->m->loop, &w->chan_w);
    dump_attach(w, dump);
    if (pid)
        as_info("worker %d (pid %d) starting, generation %u", w->id, (int)pid, g->id);
    else
        as_info("worker %d forking from the template of generation %u", w->id, g->id);
}

void worker_forked(struct worker *w, pid_t pid)
{
    if (w->pid)
        return;
    w->pid = pid;
    slot_of(w)->pid = pid;
    stdio_set_pid(w->id, worker_generation(w), pid);
    as_info("worker %d (pid %d) forked from the template, generation %u, in %.1f ms", w->id, (int)pid,
            worker_generation(w), (ev_time() - w->started) * 1e3);
    if (w->pending_sig)
        worker_signal(w, w->pending_sig);
}

/* Before a forked worker has said its pid, a signal waits for it. */
void worker_signal(struct worker *w, int sig)
{
    if (!w->pid)
        w->pending_sig = sig;
    else if (kill(w->pid, sig) < 0 && errno != ESRCH)
        as_warn("cannot signal worker %d (pid %d): %s", w->id, (int)w->pid, strerror(errno));
}

static void close_chan(struct worker *w)
{
    if (w->chan < 0)
        return;
    ev_io_stop(w->m->loop, &w->chan_w);
    close(w->chan);
    w->chan = -1;
}

ssize_t worker_recv(struct worker *w, char *buf, size_t size)
{
    ssize_t n;

    if (w->chan < 0)
        return -1;
    n = recv(w->chan, buf, size - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        close_chan(w);  /* the worker is gone or closed it; its exit tells the rest */
        return -1;
    }
    buf[n] = '\0';
    return n;
}

static void set_error(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct worker *w, const char *fmt, ...)
{
    va_list ap;

    if (w->error)
        return;     /* the first reason (the traceback) is the best one */
    va_start(ap, fmt);
    if (vasprintf(&w->error, fmt, ap) < 0)
        w->error = NULL;
    va_end(ap);
}

/* END says why, unless the worker was retired already: then its end is
 * no restart, whatever finishes it. */
static void kill_now(struct worker *w, enum worker_end end)
{
    worker_signal(w, SIGKILL);
    if (w->state != W_STOPPING && w->end != END_RETIRED)
        w->end = end;
    w->state = W_KILLED;
}

static void tell_to_stop(struct worker *w, int sig, double grace, enum worker_end end)
{
    w->state = W_STOPPING;
    w->grace = grace;
    w->deadline = ev_now(w->m->loop) + grace;
    w->end = end;
    worker_signal(w, sig);
}

/* The one entry a stuck worker gets (appstack(7) LOGS): why, the request, and the
 * Python stack of each of its threads, or why there is none. */
static void log_kill(struct worker *w, const char *stacks, const char *missing)
{
    const struct reqview *r = &w->stuck.req;
    char f_pid[48], f_cause[48], f_method[64], f_path[sizeof r->path + 16], f_usec[64];
    char f_rid[sizeof r->request_id + 24];
    const char *extra[] = { f_pid, f_cause, f_method, f_path, f_usec, f_rid };
    struct sbuf b = { 0 };

    if (w->stuck.in_request && r->thread)
        sbuf_printf(&b, "worker %d (pid %d) killed: request %s %s ran for %.1f s (timeout %g s) in thread "
                    "0x%016llx\n", w->id, (int)w->pid, r->method, r->path, w->stuck.age, w->m->cfg.timeout,
                    (unsigned long long)r->thread);
    else if (w->stuck.in_request)
        sbuf_printf(&b, "worker %d (pid %d) killed: request %s %s ran for %.1f s (timeout %g s)\n", w->id,
                    (int)w->pid, r->method, r->path, w->stuck.age, w->m->cfg.timeout);
    else
        sbuf_printf(&b, "worker %d (pid %d) killed: its loop has not turned for %.1f s, outside any request "
                    "(timeout %g s)\n", w->id, (int)w->pid, w->stuck.age, w->m->cfg.timeout);
    if (stacks)
        sbuf_printf(&b, "%s", stacks);
    else
        sbuf_printf(&b, "no Python stacks: %s", missing ? missing : "unknown");
    while (b.len && b.s[b.len - 1] == '\n')
        b.s[--b.len] = '\0';
    snprintf(f_pid, sizeof f_pid, "APPSTACK_WORKER_PID=%d", (int)w->pid);
    snprintf(f_cause, sizeof f_cause, "APPSTACK_CAUSE=%s", w->stuck.cause == END_TIMEOUT ? "timeout" : "heartbeat");
    snprintf(f_method, sizeof f_method, "HTTP_METHOD=%s", r->method);
    snprintf(f_path, sizeof f_path, "HTTP_PATH=%s", r->path);
    snprintf(f_usec, sizeof f_usec, "HTTP_DURATION_USEC=%llu", (unsigned long long)(w->stuck.age * 1e6));
    snprintf(f_rid, sizeof f_rid, "APPSTACK_REQUEST_ID=%s", r->request_id);
    log_entry(w, LOG_ERR, b.s, extra, !w->stuck.in_request ? 2 : r->request_id[0] ? 6 : 5);
    sbuf_free(&b);
}

static void exited_loading(struct worker *w, int status, const char *how)
{
    if (w->start_failed || exit_by_itself(status)) {
        worker_log(w, LOG_ERR, "worker %d (pid %d) %s before it had loaded the app", w->id, (int)w->pid, how);
        w->start_failed = true;
        set_error(w, "worker %d %s before it had loaded the app", w->id, how);
    } else {
        worker_log(w, LOG_WARNING, "worker %d (pid %d) %s while it loaded the app; starting another at once",
                   w->id, (int)w->pid, how);
        set_error(w, "worker %d %s before it had loaded the app", w->id, how);
    }
    w->end = END_CRASH;
}

static void exited_serving(struct worker *w, int status, const char *how)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        worker_log(w, LOG_INFO, "worker %d (pid %d) exited after %llu requests; replacing it", w->id, (int)w->pid,
                   (unsigned long long)slot_served(w));
    } else {
        worker_log(w, LOG_ERR, "worker %d (pid %d) %s; replacing it", w->id, (int)w->pid, how);
        /* A crash right after READY is most likely the app's doing too. */
        if (ev_now(w->m->loop) - w->ready_at < SUP_STABLE_UPTIME && exit_by_itself(status)) {
            w->start_failed = true;
            set_error(w, "worker %d %s right after it got ready", w->id, how);
        }
    }
    set_error(w, "worker %d %s", w->id, how);
    w->end = END_CRASH;
}

static void exited_killed(struct worker *w, const char *how)
{
    if (w->start_failed)
        worker_log(w, LOG_ERR, "worker %d (pid %d) %s before it had loaded the app", w->id, (int)w->pid, how);
    else if (w->end == END_TIMEOUT || w->end == END_HEARTBEAT || w->end == END_CRASH)
        worker_log(w, LOG_ERR, "worker %d (pid %d) %s; replacing it", w->id, (int)w->pid, how);
    else
        worker_log(w, LOG_INFO, "worker %d (pid %d) stopped (%s)", w->id, (int)w->pid, how);
}

static enum wout exited(struct worker *w, int status)
{
    char how[64];

    exit_describe(status, how, sizeof how);
    close_chan(w);
    if (w->state == W_DUMPING) {
        /* It ended by itself before its stacks came: the kill is moot. */
        char why[128];
        dump_cancel(&w->kill_dump);
        snprintf(why, sizeof why, "the worker %s before it answered", how);
        log_kill(w, NULL, why);
        w->state = W_KILLED;
    }
    dump_detach(w);
    switch (w->state) {
    case W_LOADING: exited_loading(w, status, how); break;
    case W_SERVING:
    case W_RECYCLING: exited_serving(w, status, how); break;
    case W_KILLED: exited_killed(w, how); break;
    default: worker_log(w, LOG_INFO, "worker %d (pid %d) stopped (%s)", w->id, (int)w->pid, how); break;
    }
    w->state = W_FREE;
    return WO_EXITED;
}

/* Its template could not fork it, or died first: it never ran. */
static enum wout not_forked(struct worker *w)
{
    close_chan(w);
    dump_detach(w);
    if (w->state == W_LOADING) {
        worker_log(w, LOG_ERR, "worker %d could not be forked from the template of generation %u (see the "
                   "template's log)", w->id, worker_generation(w));
        w->start_failed = true;
        set_error(w, "worker %d could not be forked from the template", w->id);
        w->end = END_CRASH;
    } else {
        worker_log(w, LOG_INFO, "worker %d stopped before it was forked", w->id);
    }
    w->state = W_FREE;
    return WO_EXITED;
}

static enum wout became_ready(struct worker *w)
{
    if (w->state != W_LOADING)
        return WO_NONE;
    w->state = W_SERVING;
    w->ready_at = ev_now(w->m->loop);
    worker_log(w, LOG_INFO, "worker %d (pid %d) ready, generation %u, loaded in %.2f s", w->id, (int)w->pid,
               worker_generation(w), w->ready_at - w->started);
    return WO_READY;
}

static enum wout load_failed(struct worker *w, const char *text)
{
    if (w->state != W_LOADING) {
        worker_log(w, LOG_WARNING, "worker %d (pid %d) sent FAILED after it got ready: ignored", w->id, (int)w->pid);
        return WO_NONE;
    }
    /* A start that fails again the same way (a crash loop's backoff) is
     * one line, not the same traceback again: it is in `supctl status`. */
    if (w->m->last_failure.text && !strcmp(w->m->last_failure.text, text))
        worker_log(w, LOG_ERR, "worker %d (pid %d) cannot load the app: the same error as before", w->id,
                   (int)w->pid);
    else
        worker_log(w, LOG_ERR, "worker %d (pid %d) cannot load the app:\n%s", w->id, (int)w->pid, text);
    w->start_failed = true;
    set_error(w, "%s", text);
    return WO_LOAD_FAILED;
}

static enum wout load_timeout_passed(struct worker *w)
{
    double limit = load_timeout(w->m);

    if (w->state != W_LOADING)
        return WO_NONE;
    if (!w->pid)
        worker_log(w, LOG_ERR, "worker %d was not forked from the template within %g s", w->id, limit);
    else
        worker_log(w, LOG_ERR, "worker %d (pid %d) killed: it did not load the app within %g s", w->id,
                   (int)w->pid, limit);
    w->start_failed = true;
    set_error(w, "worker did not load the app within %g s", limit);
    kill_now(w, END_CRASH);
    return WO_LOAD_FAILED;
}

static bool may_be_killed(const struct worker *w)
{
    return worker_ready(w) || w->state == W_STOPPING;
}

/* A stuck worker: its stacks are asked for first (dump.c), the kill
 * follows when they come or when it does not answer. */
static enum wout condemn(struct worker *w, enum worker_end cause, const struct reqview *r, double age)
{
    if (!may_be_killed(w))
        return WO_NONE;
    w->stuck.cause = cause;
    w->stuck.in_request = r != NULL;
    if (r)
        w->stuck.req = *r;
    else
        memset(&w->stuck.req, 0, sizeof w->stuck.req);
    w->stuck.age = r ? r->age : age;
    if (w->state != W_STOPPING)
        w->end = cause;
    w->state = W_DUMPING;
    if (!dump_ask(w, &w->kill_dump)) {
        log_kill(w, NULL, "the worker could not be asked for them");
        kill_now(w, cause);
    }
    return WO_NONE;
}

static enum wout stacks_read(struct worker *w, const char *stacks, const char *missing)
{
    if (w->state != W_DUMPING)
        return WO_NONE;
    log_kill(w, stacks, missing);
    kill_now(w, w->end);
    return WO_NONE;
}

static enum wout recycle(struct worker *w, enum worker_end cause, long long rss)
{
    if (w->state == W_SERVING) {
        w->state = W_RECYCLING;
        w->end = cause;
        if (cause == END_MAX_RSS)
            worker_log(w, LOG_INFO, "worker %d (pid %d) uses %.1f MiB, over max_rss (%.1f MiB): it serves until a "
                       "replacement is ready", w->id, (int)w->pid, (double)rss / (1 << 20),
                       (double)w->m->cfg.max_rss / (1 << 20));
    }
    return w->state == W_RECYCLING && !w->replaced_by ? WO_RECYCLE : WO_NONE;
}

static enum wout replaced(struct worker *w)
{
    if (w->state != W_RECYCLING)
        return WO_NONE;
    worker_log(w, LOG_INFO, "worker %d (pid %d) recycled (%s) after %llu requests: worker %d (pid %d) serves "
               "instead", w->id, (int)w->pid, w->end == END_MAX_RSS ? "max_rss" : "max_requests",
               (unsigned long long)slot_served(w), w->replaced_by->id, (int)w->replaced_by->pid);
    tell_to_stop(w, SIGTERM, w->m->cfg.graceful_timeout, w->end);
    return WO_NONE;
}

static enum wout retire(struct worker *w)
{
    if (w->state == W_LOADING)
        kill_now(w, END_RETIRED);   /* nothing in flight: no need to wait */
    else if (worker_ready(w))
        tell_to_stop(w, SIGTERM, w->m->cfg.graceful_timeout, END_RETIRED);
    return WO_NONE;
}

static enum wout quit(struct worker *w)
{
    if (worker_live(w) || w->state == W_STOPPING)
        tell_to_stop(w, SIGQUIT, SUP_FAST_STOP_GRACE, END_RETIRED);
    return WO_NONE;
}

static enum wout deadline_passed(struct worker *w)
{
    if (w->state != W_STOPPING)
        return WO_NONE;
    worker_log(w, LOG_WARNING, "worker %d (pid %d) killed: still running %g s after it was told to stop", w->id,
               (int)w->pid, w->grace);
    kill_now(w, END_RETIRED);
    return WO_NONE;
}

enum wout worker_step(struct worker *w, const struct wevent *ev)
{
    if (w->state == W_FREE)
        return WO_NONE;
    switch (ev->kind) {
    case WEV_READY: return became_ready(w);
    case WEV_FAILED: return load_failed(w, ev->text);
    case WEV_EXITED: return exited(w, ev->status);
    case WEV_LOAD_TIMEOUT: return load_timeout_passed(w);
    case WEV_TIMEOUT: return condemn(w, END_TIMEOUT, ev->req, 0);
    case WEV_HEARTBEAT: return condemn(w, END_HEARTBEAT, NULL, ev->age);
    case WEV_STACKS: return stacks_read(w, ev->text, ev->missing);
    case WEV_NOT_FORKED: return w->pid ? WO_NONE : not_forked(w);
    case WEV_RECYCLE: return recycle(w, ev->cause, ev->rss);
    case WEV_REPLACED: return replaced(w);
    case WEV_RETIRE: return retire(w);
    case WEV_QUIT: return quit(w);
    case WEV_DEADLINE: return deadline_passed(w);
    }
    return WO_NONE;
}
