/* A template's life, one state at a time (template.h). template_step() is
 * the only place its state changes; it signals, logs, and leaves to the
 * generation what the change means (a failed start, a failed reload). */
#include "template.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exits.h"
#include "log.h"
#include "master.h"

#define TEMPLATE_GRACE 5.0  /* s a retired template gets before SIGKILL (it has nothing in flight) */

static void tlog(const struct template *t, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A message with the template's fields: APPSTACK_WORKER=template, as on
 * what it writes itself. */
static void tlog(const struct template *t, int prio, const char *fmt, ...)
{
    char f_gen[48], *msg = NULL;
    const char *fields[] = { "APPSTACK_WORKER=template", f_gen };
    va_list ap;
    int n;

    snprintf(f_gen, sizeof f_gen, "APPSTACK_GENERATION=%u", t->gen->id);
    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    as_log_fields(prio, n >= 0 ? msg : fmt, fields, 2);
    if (n >= 0)
        free(msg);
}

void template_init(struct template *t, struct generation *g, void (*chan_cb)(struct ev_loop *, ev_io *, int))
{
    memset(t, 0, sizeof *t);
    t->m = g->m;
    t->gen = g;
    t->chan = -1;
    ev_init(&t->chan_w, chan_cb);
    t->chan_w.data = t;
}

bool template_start(struct template *t)
{
    int chan;
    pid_t pid = spawn_template(t->m, t->gen->id, &chan);

    if (pid < 0)
        return false;
    t->state = T_LOADING;
    t->pid = pid;
    t->chan = chan;
    t->started = ev_now(t->m->loop);
    t->deadline = 0;
    t->start_failed = t->retired = false;
    free(t->error);
    t->error = NULL;
    ev_io_set(&t->chan_w, chan, EV_READ);
    ev_io_start(t->m->loop, &t->chan_w);
    tlog(t, LOG_INFO, "template (pid %d) of generation %u starting: it loads the app once, workers fork from it",
         (int)pid, t->gen->id);
    return true;
}

static void close_chan(struct template *t)
{
    if (t->chan < 0)
        return;
    ev_io_stop(t->m->loop, &t->chan_w);
    close(t->chan);
    t->chan = -1;
}

ssize_t template_recv(struct template *t, char *buf, size_t size)
{
    ssize_t n;

    if (t->chan < 0)
        return -1;
    n = recv(t->chan, buf, size - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        close_chan(t);  /* its exit tells the rest */
        return -1;
    }
    buf[n] = '\0';
    return n;
}

static void set_error(struct template *t, const char *text)
{
    if (!t->error)
        t->error = strdup(text);
}

static void signal_it(struct template *t, int sig)
{
    if (t->pid > 0 && kill(t->pid, sig) < 0 && errno != ESRCH)
        tlog(t, LOG_WARNING, "cannot signal the template (pid %d): %s", (int)t->pid, strerror(errno));
}

static void kill_now(struct template *t)
{
    signal_it(t, SIGKILL);
    t->state = T_KILLED;
}

static enum tout became_ready(struct template *t)
{
    if (t->state != T_LOADING)
        return TO_NONE;
    t->state = T_READY;
    tlog(t, LOG_INFO, "template (pid %d) of generation %u ready: the app loaded in %.2f s", (int)t->pid, t->gen->id,
         ev_now(t->m->loop) - t->started);
    return TO_READY;
}

static enum tout load_failed(struct template *t, const char *text)
{
    if (t->state != T_LOADING)
        return TO_NONE;
    if (t->m->last_failure.text && !strcmp(t->m->last_failure.text, text))
        tlog(t, LOG_ERR, "template (pid %d) cannot load the app: the same error as before", (int)t->pid);
    else
        tlog(t, LOG_ERR, "template (pid %d) cannot load the app:\n%s", (int)t->pid, text);
    t->start_failed = true;
    set_error(t, text);
    return TO_LOAD_FAILED;
}

static enum tout exited(struct template *t, int status)
{
    char how[64], why[160];

    exit_describe(status, how, sizeof how);
    close_chan(t);
    switch (t->state) {
    case T_LOADING:
        if (t->start_failed || exit_by_itself(status)) {
            tlog(t, LOG_ERR, "template (pid %d) %s before it had loaded the app", (int)t->pid, how);
            t->start_failed = true;
        } else {
            tlog(t, LOG_WARNING, "template (pid %d) %s while it loaded the app; starting another", (int)t->pid, how);
        }
        snprintf(why, sizeof why, "the template %s before it had loaded the app", how);
        break;
    case T_READY:
        /* Its workers serve on; the next one to start needs a new template. */
        t->start_failed = exit_by_itself(status);
        tlog(t, t->start_failed ? LOG_ERR : LOG_WARNING, "template (pid %d) of generation %u %s; starting another",
             (int)t->pid, t->gen->id, how);
        snprintf(why, sizeof why, "the template of generation %u %s", t->gen->id, how);
        break;
    default:
        tlog(t, t->start_failed ? LOG_ERR : LOG_INFO, "template (pid %d) of generation %u stopped (%s)", (int)t->pid,
             t->gen->id, how);
        snprintf(why, sizeof why, "the template %s", how);
        break;
    }
    set_error(t, why);
    t->state = T_NONE;
    t->pid = 0;
    return TO_EXITED;
}

static enum tout load_timeout_passed(struct template *t)
{
    char why[128];

    if (t->state != T_LOADING)
        return TO_NONE;
    tlog(t, LOG_ERR, "template (pid %d) killed: it did not load the app within %g s", (int)t->pid,
         load_timeout(t->m));
    snprintf(why, sizeof why, "the template did not load the app within %g s", load_timeout(t->m));
    set_error(t, why);
    t->start_failed = true;
    kill_now(t);
    return TO_LOAD_FAILED;
}

/* It no longer forks (a thread of the app holds the GIL in C, say). */
static enum tout stuck(struct template *t, int worker)
{
    if (t->state != T_READY)
        return TO_NONE;
    tlog(t, LOG_ERR, "template (pid %d) killed: it did not fork worker %d within %g s", (int)t->pid, worker,
         load_timeout(t->m));
    t->start_failed = true;
    kill_now(t);
    return TO_NONE;
}

static enum tout retire(struct template *t)
{
    t->retired = true;
    if (t->state == T_LOADING) {
        kill_now(t);
    } else if (t->state == T_READY) {
        t->state = T_STOPPING;
        t->deadline = ev_now(t->m->loop) + TEMPLATE_GRACE;
        signal_it(t, SIGTERM);
    }
    return TO_NONE;
}

static enum tout deadline_passed(struct template *t)
{
    if (t->state != T_STOPPING)
        return TO_NONE;
    tlog(t, LOG_WARNING, "template (pid %d) killed: still running %g s after it was told to exit", (int)t->pid,
         TEMPLATE_GRACE);
    kill_now(t);
    return TO_NONE;
}

enum tout template_step(struct template *t, const struct tevent *ev)
{
    if (t->state == T_NONE)
        return TO_NONE;
    switch (ev->kind) {
    case TEV_READY: return became_ready(t);
    case TEV_FAILED: return load_failed(t, ev->text);
    case TEV_EXITED: return exited(t, ev->status);
    case TEV_LOAD_TIMEOUT: return load_timeout_passed(t);
    case TEV_STUCK: return stuck(t, ev->worker);
    case TEV_RETIRE: return retire(t);
    case TEV_DEADLINE: return deadline_passed(t);
    }
    return TO_NONE;
}

bool template_check(const struct template *t, ev_tstamp now, struct tevent *ev)
{
    memset(ev, 0, sizeof *ev);
    if (t->state == T_LOADING && now - t->started > load_timeout(t->m))
        ev->kind = TEV_LOAD_TIMEOUT;
    else if (t->state == T_STOPPING && now > t->deadline)
        ev->kind = TEV_DEADLINE;
    else
        return false;
    return true;
}

const char *template_state_name(const struct template *t)
{
    switch (t->state) {
    case T_LOADING: return "loading";
    case T_READY: return "ready";
    case T_STOPPING:
    case T_KILLED: return "stopping";
    default: return "none";
    }
}

void template_free(struct template *t)
{
    close_chan(t);
    free(t->error);
    t->error = NULL;
}
