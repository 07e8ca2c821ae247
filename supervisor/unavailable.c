/* While no worker can serve (the app fails to load, or every worker is
 * down and the next start waits for its backoff), appstackd answers the
 * app sockets itself: each connection gets "503 Service Unavailable" with
 * Retry-After and is closed. A client straight on the socket, or
 * appstack-proxy in front, gets an honest answer at once instead of a
 * connection that waits in the backlog for a worker that is not coming
 * (see docs/supervisor.md). lifecycle.c turns this on and off after every
 * event; the first READY worker turns it off.
 *
 * Each connection: read the request head (for HEAD, and so that the
 * answer does not race the request), answer with the error response both
 * servers write (http_reply.h), linger (linger.h), close. No Python, no
 * parsing beyond finding the end of the head. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accept_rest.h"
#include "http_date.h"
#include "http_reply.h"
#include "linger.h"
#include "log.h"
#include "unavailable.h"

#define HEAD_MAX 8192           /* read no more before answering */
#define HEAD_WAIT 1.0           /* s to wait for a request head before answering anyway */
#define MAX_CONNS 512           /* beyond: answered and closed at once */
#define ACCEPTS_PER_TURN 64

struct uconn {
    ev_io io;
    ev_timer timer;
    bool answered;
    size_t got;
    char head[HEAD_MAX];
    struct uconn *prev, *next;
};

static struct {
    struct master *m;
    bool on;
    ev_io lw[SUP_MAX_LISTEN];
    int n_lw;
    struct as_accept_rest rest;     /* out of descriptors: the sockets rest */
    int retry_after;            /* s */
    struct uconn *conns;
    int n_conns;
    unsigned long answered;     /* since it was turned on */
} U;

static void conn_free(struct uconn *c)
{
    ev_io_stop(U.m->loop, &c->io);
    ev_timer_stop(U.m->loop, &c->timer);
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        U.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    U.n_conns--;
    free(c);
}

/* One send: a fresh connection's socket buffer holds it whole. False:
 * close FD now (the linger could not begin). */
static bool answer(int fd, bool head_only)
{
    char extra[64], buf[AS_HTTP_REPLY_MAX + sizeof extra];
    size_t n;

    snprintf(extra, sizeof extra, "Retry-After: %d\r\nCache-Control: no-store\r\n", U.retry_after);
    n = as_http_reply(buf, sizeof buf, 503, as_http_date_now(time(NULL)), false, false, head_only, extra);
    if (send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        as_debug("503 responder: send: %s", strerror(errno));
    U.answered++;
    return as_linger_begin(fd);
}

static bool head_complete(const struct uconn *c)
{
    for (size_t i = 0; i + 1 < c->got; i++)
        if (c->head[i] == '\n' && (c->head[i + 1] == '\n' || (c->head[i + 1] == '\r' && i + 2 < c->got &&
                                                            c->head[i + 2] == '\n')))
            return true;
    return c->got == sizeof c->head;
}

static void do_answer(struct uconn *c)
{
    if (!answer(c->io.fd, c->got >= 5 && !memcmp(c->head, "HEAD ", 5))) {
        conn_free(c);
        return;
    }
    c->answered = true;
    ev_timer_stop(U.m->loop, &c->timer);
    ev_timer_set(&c->timer, AS_LINGER_SECONDS, 0);
    ev_timer_start(U.m->loop, &c->timer);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct uconn *c = io->data;
    char discard[4096];

    (void)loop;
    (void)revents;
    if (c->answered) {
        if (!as_linger_drain(io->fd, discard, sizeof discard, 16))
            conn_free(c);       /* the client closed */
        return;
    }
    for (;;) {
        ssize_t n = recv(io->fd, c->head + c->got, sizeof c->head - c->got, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (n == 0)
                answer(io->fd, false);  /* half-closed after its request: it may still read */
            conn_free(c);
            return;
        }
        c->got += (size_t)n;
        if (head_complete(c)) {
            do_answer(c);
            return;
        }
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct uconn *c = t->data;

    (void)loop;
    (void)revents;
    if (c->answered)
        conn_free(c);       /* lingered long enough */
    else
        do_answer(c);       /* no complete head in time: answer anyway */
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct uconn *c;

        if (fd < 0) {
            /* EAGAIN: none queued, or a worker took it first. */
            if (as_accept_rest_failed(loop, &U.rest, errno, U.n_conns) == AS_ACCEPT_AGAIN)
                continue;
            return;
        }
        if (U.n_conns >= MAX_CONNS || !(c = malloc(sizeof *c))) {
            char discard[4096];

            /* No linger: this one does not wait, but what the client
             * sent already is read, so that the close is no reset. */
            if (answer(fd, false))
                as_linger_drain(fd, discard, sizeof discard, 16);
            close(fd);
            continue;
        }
        c->answered = false;
        c->got = 0;
        ev_io_init(&c->io, conn_read_cb, fd, EV_READ);
        c->io.data = c;
        ev_timer_init(&c->timer, conn_timer_cb, HEAD_WAIT, 0);
        c->timer.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timer);
        c->prev = NULL;
        c->next = U.conns;
        if (U.conns)
            U.conns->prev = c;
        U.conns = c;
        U.n_conns++;
    }
}

void unavailable_set(struct master *m, bool on, double retry_after)
{
    U.m = m;
    U.retry_after = retry_after < 1 ? 1 : retry_after > 3600 ? 3600 : (int)ceil(retry_after);
    if (on == U.on)
        return;
    U.on = on;
    if (on) {
        U.answered = 0;
        U.n_lw = m->n_listen;
        for (int i = 0; i < U.n_lw; i++) {
            /* The workers make it non-blocking too (same open file): a
             * connection a worker takes first must not block us. */
            int flags = fcntl(m->listen_fd[i], F_GETFL);
            if (flags < 0 || fcntl(m->listen_fd[i], F_SETFL, flags | O_NONBLOCK) < 0) {
                as_err("503 responder: %s: %s", m->listen_name[i], strerror(errno));
                U.n_lw = i;
                break;
            }
            ev_io_init(&U.lw[i], accept_cb, m->listen_fd[i], EV_READ);
            ev_io_start(m->loop, &U.lw[i]);
        }
        as_accept_rest_init(&U.rest, U.lw, U.n_lw);
        as_warn("no worker can serve: appstackd answers 503 on the app sockets until one is ready");
    } else {
        as_accept_rest_stop(m->loop, &U.rest);
        U.n_lw = 0;
        if (!m->stopping)
            as_notice("a worker serves again (%lu connections were answered 503 meanwhile)", U.answered);
    }
}

bool unavailable_on(void)
{
    return U.on;
}

void unavailable_close(void)
{
    if (U.on && U.m)
        as_accept_rest_stop(U.m->loop, &U.rest);
    U.on = false;
    U.n_lw = 0;
    while (U.conns)
        conn_free(U.conns);
}
