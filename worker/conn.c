/* Client connections: accept, parse, serve one request at a time, keep
 * alive. Idle connections wait in the event loop (they never pin the
 * worker) on a list ordered by last activity, so expiring them is O(1).
 * With threads > 1 a parked connection waits in an epoll set of its own
 * (parked_epfd), which reports it once (EPOLLONESHOT): whoever takes it
 * there (a request thread that just finished a request, or the loop for a
 * free thread, threads.c) takes it off the idle list, with the GIL held,
 * and the thread that serves it parks it again when it is done, so that
 * only one thread ever has it. */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept_pause.h"
#include "linger.h"
#include "log.h"
#include "request_id.h"
#include "worker_ident.h"

static void list_remove(struct wk_conn *c)
{
    if (c->next) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
        c->next = c->prev = NULL;
    }
}

static void list_append(struct wk_conn *c)
{
    struct wk_conn *h = &W.idle_head;

    c->prev = h->prev;
    c->next = h;
    h->prev->next = c;
    h->prev = c;
}

/* Back to the loop, on the idle list; with threads > 1 armed (again: the
 * event that handed it over disarmed it). False when closed instead. */
static bool park(struct wk_conn *c)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = c };

    list_append(c);
    if (W.threads > 1) {
        if (epoll_ctl(W.parked_epfd, c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            as_err("epoll_ctl: %s", strerror(errno));
            wk_conn_close(c);
            return false;
        }
        c->in_epoll = true;
    }
    return true;
}

static struct wk_conn *accept_one(struct wk_listener *l, bool *more);

/* threads > 1, between connections: a listening socket that took its
 * turn in the parked set is armed again once a request has been served
 * since. GIL held. */
void wk_conn_rearm_new(void)
{
    for (int i = 0; i < W.n_lst; i++) {
        struct wk_listener *l = &W.lst[i];
        struct epoll_event again = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = l };
        if (!l->disarmed || l->disarmed_at == W.req_seq)
            continue;
        l->disarmed = false;
        if (W.listening == WK_LISTEN_PARKED && epoll_ctl(W.parked_epfd, EPOLL_CTL_MOD, l->fd, &again) < 0)
            as_err("epoll_ctl(listening socket %d): %s", l->fd, strerror(errno));
    }
}

/* threads > 1: up to MAX parked connections that have something to read
 * (or were closed), off the idle list; each is reported once until it is
 * parked again. Called with the GIL held, which keeps the idle list and
 * the closes of expired connections in step with it. Returns how many. */
int wk_conn_take_waiting(struct wk_conn **out, int max)
{
    struct epoll_event ev[WK_TAKE_WAITING_MAX];
    int n, got = 0;

    if (max > WK_TAKE_WAITING_MAX)
        max = WK_TAKE_WAITING_MAX;
    if (max <= 0)
        return 0;
    do
        n = epoll_wait(W.parked_epfd, ev, max, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        as_err("epoll_wait(parked connections): %s", strerror(errno));
        return 0;
    }
    for (int i = 0; i < n; i++) {
        struct wk_conn *c;
        if (*(enum wk_item *)ev[i].data.ptr == WK_LISTENER) {
            /* New connections' turn (loop.c wk_listening_update): up to
             * a thread's worth are taken, the first served now and the
             * others lined up behind the connections waiting. The
             * listening socket (EPOLLONESHOT there) is armed again once
             * the worker has served a request since (wk_conn_rearm_new),
             * behind the connections waiting then: one turn in each round
             * of them, and new connections whose requests have not come
             * yet do not all go to the first busy worker that looks. */
            struct wk_listener *l = ev[i].data.ptr;
            bool more = true;
            c = accept_one(l, &more);
            if (c)
                out[got++] = c;
            for (int k = 1; c && more && k < W.threads; k++) {
                struct wk_conn *next = accept_one(l, &more);
                if (next) {
                    next->last_active = wk_now();
                    park(next);
                }
            }
            l->disarmed_at = W.req_seq;
            l->disarmed = true;
            continue;
        }
        c = ev[i].data.ptr;
        list_remove(c);
        out[got++] = c;
    }
    return got;
}

void wk_conn_close(struct wk_conn *c)
{
    list_remove(c);
    if (close(c->fd) < 0 && errno != EINTR)
        as_warn("close: %s", strerror(errno));
    as_http_free(&c->req);
    Py_XDECREF(c->remote_addr);
    Py_XDECREF(c->remote_port);
    free(c);
    W.n_conns--;
}

/* One new connection from L, or NULL; then *MORE (if given) says whether
 * another accept may find one. */
static struct wk_conn *accept_one(struct wk_listener *l, bool *more)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct wk_conn *c;
    bool again = true;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0) {
        switch (as_accept_failed(&W.accept_pause, errno, wk_now(), (long)W.n_conns)) {
        case AS_ACCEPT_AGAIN:
            break;
        case AS_ACCEPT_PAUSE_NOW:
            wk_accept_pause();
            again = false;
            break;
        case AS_ACCEPT_DONE:
            again = false;
            break;
        }
        if (more)
            *more = again;
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        as_err("out of memory for a connection");
        close(fd);
        if (more)
            *more = true;
        return NULL;
    }
    c->kind = WK_CONN;
    c->fd = fd;
    c->lst = l;
    wk_peer_set(c, (struct sockaddr *)&ss, len);
    as_http_init(&c->req, c->trusted ? &W.proxy_limits : &W.limits);
    c->req.on_body = wk_on_body;
    W.n_conns++;
    return c;
}

/* Returns false when there was nothing (more) to accept. */
bool wk_conn_accept(struct wk_listener *l)
{
    struct epoll_event ev = { .events = EPOLLIN };
    bool more;
    struct wk_conn *c = accept_one(l, &more);

    if (!c)
        return more;
    /* Usually the request is already there: no need to wait for epoll. A
     * request thread takes it at once; it is registered when one parks it,
     * so that it counts among the thread's connections from the start. */
    if (W.threads > 1) {
        wk_threads_dispatch(c);
        return true;
    }
    ev.data.ptr = c;
    if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        as_err("epoll_ctl: %s", strerror(errno));
        wk_conn_close(c);
        return true;
    }
    wk_conn_readable(c);
    return true;
}

static void request_reset(struct wk_conn *c)
{
    struct as_http_request *r = &c->req;

    R.c = c;
    R.r = r;
    R.head_method = !strcmp(r->method, "HEAD");
    R.http11 = r->http_major > 1 || (r->http_major == 1 && r->http_minor >= 1);
    R.body_done = R.continue_pending = R.client_gone = R.must_close = R.body_error = false;
    R.sink = NULL;
    R.sink_cap = R.sink_len = 0;
    R.in_pos = R.in_len = 0;
    R.started = R.headers_sent = R.chunked = R.no_body = false;
    R.code = 0;
    R.resp_length = -1;
    R.resp_sent = 0;
}

static void call_app(struct wk_conn *c)
{
    PyObject *environ = wk_environ_build(c);

    if (!environ) {
        wk_log_exception("cannot build the WSGI environ");
        wk_send_error(c->fd, 500, R.http11, R.head_method);
        R.must_close = true;
        return;
    }
    wk_response_run(environ);
    Py_DECREF(environ);
}

/* Tells the proxy that asked which worker holds this connection
 * (worker_ident.h). The answer is made once: the token lasts as long as
 * the process. */
static bool identify(struct wk_conn *c)
{
    static char msg[AS_WORKER_ANSWER_MAX];
    static size_t len;
    struct iovec iov;

    if (!len) {
        uint64_t token;
        if (getrandom(&token, sizeof token, 0) != (ssize_t)sizeof token)
            token = ((uint64_t)getpid() << 40) ^ wk_now_usec();     /* still unique enough on one host */
        len = as_worker_ident_answer(msg, sizeof msg, token, W.threads);
    }
    iov.iov_base = msg;
    iov.iov_len = len;
    return wk_send_all(c->fd, &iov, 1);
}

/* Serves the request whose header section was just parsed. Returns whether
 * the connection may carry another one. */
static bool serve(struct wk_conn *c)
{
    struct as_http_request *r = &c->req;
    const struct as_http_header *rid;
    bool keep;

    request_reset(c);
    as_http_begin_body(r);
    if (r->state == AS_HTTP_ERROR) {
        wk_send_error(c->fd, r->status ? r->status : 400, R.http11, R.head_method);
        return false;
    }
    R.body_done = r->state == AS_HTTP_DONE;
    R.continue_pending = r->expect_continue && R.http11 && !R.body_done;
    R.must_close = r->upgrade;  /* we do not switch protocols */
    /* Only a trusted proxy gets to know, and only once per connection. */
    if (c->served == 0 && c->trusted && R.http11 && as_http_header(r, AS_WORKER_FIELD) && !identify(c)) {
        R.client_gone = true;
        return false;
    }
    R.seq = ++W.req_seq;
    c->served++;
    R.active = true;
    rid = c->trusted ? as_http_header(r, "X-Request-ID") : NULL;
    if (rid && !as_request_id_valid(rid->value, rid->value_len))
        rid = NULL;
    wk_slot_request_begin(r->method, r->target, r->target_len, rid ? rid->value : "", rid ? rid->value_len : 0);
    call_app(c);
    R.active = false;
    Py_CLEAR(R.status);
    Py_CLEAR(R.headers);
    keep = !R.must_close && !R.client_gone && !R.body_error;
    if (keep && !R.body_done)
        keep = wk_body_drain(256 * 1024);
    wk_slot_request_end();
    return keep;
}

/* Unread input would turn the close into a reset (see linger.h): the
 * connection waits in the loop, without pinning the worker, until the
 * client closes or the keep-alive timeout passes (it shares the idle
 * list, which stays ordered by one timeout). */
static bool linger(struct wk_conn *c)
{
    if (W.stopping || W.term || !as_linger_begin(c->fd)) {
        wk_conn_close(c);
        return false;
    }
    c->lingering = true;
    c->last_active = wk_now();
    return park(c);
}

static bool discard_input(struct wk_conn *c)
{
    if (!as_linger_drain(c->fd, R.rbuf, WK_RBUF_SIZE, 16)) {
        wk_conn_close(c);
        return false;
    }
    return park(c);
}

/* Reads and serves whatever the connection has. Returns false when the
 * connection was closed (and freed). */
bool wk_conn_readable(struct wk_conn *c)
{
    struct as_http_request *r = &c->req;
    bool unread;

    list_remove(c);
    if (c->lingering)
        return discard_input(c);
    for (;;) {
        if (R.rpos == R.rlen) {
            ssize_t n = recv(c->fd, R.rbuf, WK_RBUF_SIZE, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                break;
            if (n <= 0) {
                unread = false;
                goto close;
            }
            R.rpos = 0;
            R.rlen = (size_t)n;
        }
        R.rpos += as_http_feed(r, R.rbuf + R.rpos, R.rlen - R.rpos);
        if (r->state == AS_HTTP_ERROR) {
            wk_send_error(c->fd, r->status ? r->status : 400, true, false);
            unread = true;
            goto close;
        }
        if (r->state == AS_HTTP_HEAD_DONE || r->state == AS_HTTP_DONE) {
            if (!serve(c)) {
                unread = !R.client_gone && (!R.body_done || R.rpos < R.rlen);
                goto close;
            }
            as_http_next(r);
            if (R.rpos == R.rlen)
                break;  /* nothing pipelined: back to the loop, no extra recv */
        }
    }
    R.rpos = R.rlen = 0;
    c->last_active = wk_now();
    return park(c);
close:
    R.rpos = R.rlen = 0;
    if (unread)
        return linger(c);
    wk_conn_close(c);
    return false;
}

/* Closes connections idle for longer than keepalive; returns the seconds
 * until the next one expires. */
double wk_conn_expire(double now)
{
    struct wk_conn *h = &W.idle_head;
    /* keepalive = 0 turns keep-alive off; a header or a linger still gets a second. */
    double ka = W.cfg.keepalive > 0 ? W.cfg.keepalive : 1.0;

    while (h->next != h && h->next->last_active + ka <= now) {
        struct wk_conn *c = h->next;
        char b;
        /* With threads > 1 a parked connection whose next request came
         * while every thread was busy is still on this list: it waits for
         * a thread, it is not idle. */
        if (W.threads > 1 && !c->lingering && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
            list_remove(c);
            c->last_active = now;
            list_append(c);
            continue;
        }
        wk_conn_close(c);
    }
    if (h->next == h)
        return 3600;
    return h->next->last_active + ka - now;
}

/* Stopping, C idle after a request: whether it may be closed, no next
 * request having arrived. Its reading side is shut first, so that on a
 * unix socket the proxy's next send fails at once (EPIPE, nothing went out:
 * it sends the request elsewhere) instead of arriving just before the close
 * and being lost with it; what arrived before is still there, and answered.
 * (Over TCP the usual keep-alive race remains, which the proxy covers by
 * retrying on a pooled connection closed before any response byte.) */
static bool nothing_came(struct wk_conn *c)
{
    char b;

    if (shutdown(c->fd, SHUT_RD) < 0 && errno != ENOTCONN)
        as_warn("shutdown: %s", strerror(errno));
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
}

/* Stopping: serve what already arrived (with Connection: close) and close
 * keep-alive connections that sit idle between requests (a proxy retries a
 * request that meets such a close). A connection whose first request has not
 * arrived yet stays open: its client is about to send, and closing it would
 * fail that request. Returns how many such connections remain. */
/* The same with request threads: a connection with bytes waiting is
 * reported by epoll and served by a thread; this only closes the others. */
static size_t drain_parked(void)
{
    struct wk_conn *h = &W.idle_head, *c, *next;
    size_t waiting = 0;
    char b;

    for (c = h->next; c != h; c = next) {
        ssize_t n;
        next = c->next;
        if (c->lingering)
            continue;
        n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 || (n < 0 && errno == EAGAIN && (c->served == 0 || !nothing_came(c))))
            waiting++;      /* a request is there, or may come */
        else
            wk_conn_close(c);
    }
    return waiting;
}

size_t wk_conn_drain_all(void)
{
    struct wk_conn *h = &W.idle_head, *c;
    size_t waiting = 0, n = 0;

    if (W.threads > 1)
        return drain_parked();
    /* Each one visited leaves the head: closed, or re-queued at the tail. */
    for (c = h->next; c != h; c = c->next)
        n++;
    while (n-- > 0 && h->next != h) {
        c = h->next;
        if (!wk_conn_readable(c) || c->lingering)
            continue;   /* closed, or answered and lingering */
        if (c->served == 0)
            waiting++;
        else if (nothing_came(c))
            wk_conn_close(c);
        else if (wk_conn_readable(c))
            waiting++;  /* came just now: answered with the close, or the rest of it awaited */
    }
    return waiting;
}
