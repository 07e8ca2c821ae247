/* Asking a worker for its Python stacks and reading the answer (dump.h).
 * A dump nobody asked for (an operator's kill -s RTMIN+2) is logged. */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "procfs.h"

static void unlink_waiter(struct dump_waiter *dw)
{
    if (!dw->prevp)
        return;
    *dw->prevp = dw->next;
    if (dw->next)
        dw->next->prevp = dw->prevp;
    dw->next = NULL;
    dw->prevp = NULL;
}

void dump_cancel(struct dump_waiter *dw)
{
    unlink_waiter(dw);
}

/* Tells every waiter, or logs a dump nobody waits for. */
static void finish(struct worker *w, const char *stacks, const char *missing)
{
    struct dump_state *d = &w->dump;

    ev_timer_stop(w->m->loop, &d->deadline);
    d->asked = false;
    if (!d->waiters && stacks) {
        worker_log(w, LOG_INFO, "worker %d (pid %d): Python stacks, %s:\n%s", w->id, (int)w->pid,
                   d->late ? "answered after the dump had timed out" : "asked for by a signal from outside", stacks);
        d->late -= d->late > 0;
    }
    while (d->waiters) {
        struct dump_waiter *dw = d->waiters;
        unlink_waiter(dw);
        dw->done(dw, w, stacks, missing);
    }
}

/* Bytes up to a NUL belong to the dump in progress; a NUL ends it. */
static void consume(struct worker *w, const char *data, size_t n)
{
    struct dump_state *d = &w->dump;

    while (n > 0) {
        const char *nul = memchr(data, '\0', n);
        size_t k = nul ? (size_t)(nul - data) : n;
        if (d->buf.len < DUMP_MAX)
            sbuf_add(&d->buf, data, k < DUMP_MAX - d->buf.len ? k : DUMP_MAX - d->buf.len);
        if (!nul)
            return;
        finish(w, d->buf.len ? d->buf.s : "(no Python thread)\n", NULL);
        d->buf.len = 0;
        data = nul + 1;
        n -= k + 1;
    }
}

static void close_pipe(struct worker *w)
{
    struct dump_state *d = &w->dump;

    if (d->fd < 0)
        return;
    ev_io_stop(w->m->loop, &d->io);
    close(d->fd);
    d->fd = -1;
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    char chunk[16384];
    ssize_t n;

    (void)loop;
    (void)revents;
    while (w->dump.fd >= 0) {
        n = read(w->dump.fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close_pipe(w);  /* the worker is gone; its exit tells the waiters */
            return;
        }
        consume(w, chunk, (size_t)n);
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    char why[256], state[160];

    (void)loop;
    (void)revents;
    if (w->dump.buf.len) {
        sbuf_printf(&w->dump.buf, "\n(the dump was cut short: the worker stopped writing it)\n");
        finish(w, w->dump.buf.s, NULL);
        w->dump.buf.len = 0;
        return;
    }
    proc_describe(w->pid, state, sizeof state);
    snprintf(why, sizeof why, "the worker did not answer within %g s (%s)", DUMP_WAIT, state);
    w->dump.late++;     /* the signal is still pending: its answer may come */
    finish(w, NULL, why);
}

void dump_init(struct worker *w)
{
    w->dump.fd = -1;
    ev_init(&w->dump.io, read_cb);
    w->dump.io.data = w;
    ev_init(&w->dump.deadline, deadline_cb);
    w->dump.deadline.data = w;
}

void dump_attach(struct worker *w, int fd)
{
    struct dump_state *d = &w->dump;

    d->fd = fd;
    d->asked = false;
    d->late = 0;
    d->buf.len = 0;
    ev_io_set(&d->io, fd, EV_READ);
    ev_io_start(w->m->loop, &d->io);
}

void dump_detach(struct worker *w)
{
    struct dump_state *d = &w->dump;

    if (d->fd >= 0)
        read_cb(w->m->loop, &d->io, EV_READ);   /* a dump written just before the end */
    if (d->waiters)
        finish(w, d->buf.len ? d->buf.s : NULL, "the worker exited before it answered");
    ev_timer_stop(w->m->loop, &d->deadline);
    close_pipe(w);
    sbuf_free(&d->buf);
    d->asked = false;
}

bool dump_ask(struct worker *w, struct dump_waiter *dw)
{
    struct dump_state *d = &w->dump;

    if (w->pid <= 0 || d->fd < 0)
        return false;
    if (!d->asked) {
        if (kill(w->pid, AS_SIG_DUMP) < 0) {
            if (errno != ESRCH)
                as_warn("cannot ask worker %d (pid %d) for its stacks: %s", w->id, (int)w->pid, strerror(errno));
            return false;
        }
        d->asked = true;
        ev_timer_set(&d->deadline, DUMP_WAIT, 0);
        ev_timer_start(w->m->loop, &d->deadline);
    }
    dw->next = d->waiters;
    if (d->waiters)
        d->waiters->prevp = &dw->next;
    dw->prevp = &d->waiters;
    d->waiters = dw;
    return true;
}
