/* Client connections: accept, parse, serve one request at a time, keep
 * alive. Idle connections wait in the event loop (they never pin the
 * worker) on a list ordered by last activity, so expiring them is O(1). */
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

/* Returns false when there was nothing (more) to accept. */
bool wk_conn_accept(struct wk_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct epoll_event ev = { .events = EPOLLIN };
    struct wk_conn *c;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0) {
        switch (as_accept_failed(&W.accept_pause, errno, wk_now(), (long)W.n_conns)) {
        case AS_ACCEPT_AGAIN:
            return true;
        case AS_ACCEPT_PAUSE_NOW:
            wk_accept_pause();
            return false;
        case AS_ACCEPT_DONE:
            return false;
        }
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        as_err("out of memory for a connection");
        close(fd);
        return true;
    }
    c->kind = WK_CONN;
    c->fd = fd;
    c->lst = l;
    wk_peer_set(c, (struct sockaddr *)&ss, len);
    as_http_init(&c->req, c->trusted ? &W.proxy_limits : &W.limits);
    c->req.on_body = wk_on_body;
    W.n_conns++;
    ev.data.ptr = c;
    if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        as_err("epoll_ctl: %s", strerror(errno));
        wk_conn_close(c);
        return true;
    }
    /* Usually the request is already there: no need to wait for epoll. */
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
        len = as_worker_ident_answer(msg, sizeof msg, token, 1);
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
    W.req_seq++;
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
    list_append(c);
    return true;
}

static bool discard_input(struct wk_conn *c)
{
    if (!as_linger_drain(c->fd, W.rbuf, WK_RBUF_SIZE, 16)) {
        wk_conn_close(c);
        return false;
    }
    list_append(c);
    return true;
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
        if (W.rpos == W.rlen) {
            ssize_t n = recv(c->fd, W.rbuf, WK_RBUF_SIZE, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                break;
            if (n <= 0) {
                unread = false;
                goto close;
            }
            W.rpos = 0;
            W.rlen = (size_t)n;
        }
        W.rpos += as_http_feed(r, W.rbuf + W.rpos, W.rlen - W.rpos);
        if (r->state == AS_HTTP_ERROR) {
            wk_send_error(c->fd, r->status ? r->status : 400, true, false);
            unread = true;
            goto close;
        }
        if (r->state == AS_HTTP_HEAD_DONE || r->state == AS_HTTP_DONE) {
            if (!serve(c)) {
                unread = !R.client_gone && (!R.body_done || W.rpos < W.rlen);
                goto close;
            }
            as_http_next(r);
            if (W.rpos == W.rlen)
                break;  /* nothing pipelined: back to the loop, no extra recv */
        }
    }
    W.rpos = W.rlen = 0;
    c->last_active = wk_now();
    list_append(c);
    return true;
close:
    W.rpos = W.rlen = 0;
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

    while (h->next != h && h->next->last_active + ka <= now)
        wk_conn_close(h->next);
    if (h->next == h)
        return 3600;
    return h->next->last_active + ka - now;
}

/* Stopping: serve what already arrived (with Connection: close) and close
 * keep-alive connections that sit idle between requests (a proxy retries a
 * request that meets such a close). A connection whose first request has not
 * arrived yet stays open: its client is about to send, and closing it would
 * fail that request. Returns how many such connections remain. */
size_t wk_conn_drain_all(void)
{
    struct wk_conn *h = &W.idle_head, *c;
    size_t waiting = 0, n = 0;

    /* Each one visited leaves the head: closed, or re-queued at the tail. */
    for (c = h->next; c != h; c = c->next)
        n++;
    while (n-- > 0 && h->next != h) {
        c = h->next;
        if (!wk_conn_readable(c))
            continue;   /* closed, or answered and lingering */
        if (c->served == 0 && !c->lingering)
            waiting++;
        else if (!c->lingering)
            wk_conn_close(c);
    }
    return waiting;
}
