/* Client connections: accept, read and parse requests, dispatch them to the
 * static server or the forwarder, write responses in order, keep-alive.
 * An idle keep-alive connection holds no buffer and no parser: buffers come
 * from free lists when a request starts and go back when it ends. */
#include "proxy.h"
#include "resp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE 0.1            /* s accepts rest when out of descriptors */
#define STOP_IDLE_GRACE 1.0         /* s an idle connection may still send at TERM */
#define PARSER_CACHE 1024           /* parsers kept for reuse: one per request in flight */
#define PATH_MAX_DECODED 4200

static struct {
    struct as_http_request *v[PARSER_CACHE];
    int n;
} parsers;

static int on_body(void *ctx, const char *data, size_t len)
{
    struct conn *c = ctx;

    return spool_append(&c->body, data, len) < 0 ? -1 : 0;
}

static struct as_http_request *parser_get(const struct as_http_limits *limits)
{
    struct as_http_request *r;

    if (parsers.n) {
        r = parsers.v[--parsers.n];
        if (!memcmp(&r->limits, limits, sizeof *limits))
            return r;
        as_http_free(r);
    } else {
        r = malloc(sizeof *r);
        if (!r) {
            perror("appstack-proxy: out of memory");
            abort();
        }
    }
    as_http_init(r, limits);
    return r;
}

static void parser_put(struct as_http_request *r)
{
    if (!r)
        return;
    if (r->state == AS_HTTP_DONE && parsers.n < PARSER_CACHE) {
        as_http_next(r);
        parsers.v[parsers.n++] = r;
        return;
    }
    as_http_free(r);
    free(r);
}

static void watch(struct conn *c, int events)
{
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(srv.loop, &c->io);
    if (!events)
        return;
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(srv.loop, &c->io);
}

static void arm(struct conn *c, double seconds)
{
    c->timer.repeat = seconds;
    ev_timer_again(srv.loop, &c->timer);
}

/* Drops the per-request state; the connection itself stays. */
static void release_request(struct conn *c)
{
    forward_detach(c);
    spool_free(&c->body);
    spool_free(&c->out);
    parser_put(c->req);
    c->req = NULL;
    if (c->rt) {
        runtime_put(c->rt);
        c->rt = NULL;
    }
    c->upstream = NULL;
    c->resp_done = false;
    c->static_req = false;
    c->tries = 0;
    c->status = 0;
}

static void conn_close(struct conn *c)
{
    release_request(c);
    block_put(c->in);
    ev_io_stop(srv.loop, &c->io);
    ev_timer_stop(srv.loop, &c->timer);
    if (close(c->fd) < 0 && errno != EINTR)
        as_debug("close: %s", strerror(errno));
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    srv.n_conns--;
    if (srv.stopping && srv.n_conns == 0)
        ev_break(srv.loop, EVBREAK_ALL);
}

void conn_abort(struct conn *c)
{
    conn_close(c);
}

static void peer_name(struct conn *c, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer, sizeof c->peer);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "unix");
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_parse(struct conn *c);

/* Beyond max_connections: a fast 503, never a queue. */
static void reject(int fd)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nServer: appstack\r\n"
        "Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\n"
        "503 Service Unavailable\n";
    char sink[4096];

    if (send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        as_debug("503 to an excess connection: %s", strerror(errno));
    shutdown(fd, SHUT_WR);
    /* Unread request bytes would turn our close into a reset that may
     * destroy the 503 before the client reads it. */
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    close(fd);
}

static void conn_new(int fd, const struct sockaddr_storage *ss)
{
    struct conn *c = calloc(1, sizeof *c);
    int one = 1;

    if (!c) {
        as_err("out of memory for a connection");
        close(fd);
        return;
    }
    c->fd = fd;
    peer_name(c, ss);
    if (ss->ss_family != AF_UNIX && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        as_debug("TCP_NODELAY: %s", strerror(errno));
    spool_init(&c->body, 0, true);
    spool_init(&c->out, RESP_MEM_LIMIT, false);
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    ev_init(&c->timer, conn_timer_cb);
    c->next = srv.conns;
    if (srv.conns)
        srv.conns->prev = c;
    srv.conns = c;
    srv.n_conns++;
    c->state = C_IDLE;
    ev_io_start(srv.loop, &c->io);
    arm(c, srv.rt->cfg.client_header_timeout);
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (srv.accepting)
        for (int i = 0; i < srv.n_listen; i++)
            ev_io_start(loop, &srv.lio[i]);
}

/* Out of descriptors, the queued connection stays readable: watching the
 * sockets would spin. They rest for a moment, and the shortage is logged
 * once a second at most, with a count. */
static void accept_pause(int err)
{
    static ev_timer resume;
    static ev_tstamp last_warning;
    static unsigned long failures;
    ev_tstamp now = ev_now(srv.loop);

    failures++;
    if (now - last_warning >= 1.0) {
        as_warn("accept: %s (%ld connections open, %lu failed accepts): pausing accepts",
                strerror(err), srv.n_conns, failures);
        failures = 0;
        last_warning = now;
    }
    if (ev_is_active(&resume))
        return;
    for (int i = 0; i < srv.n_listen; i++)
        ev_io_stop(srv.loop, &srv.lio[i]);
    ev_timer_init(&resume, accept_resume_cb, ACCEPT_PAUSE, 0);
    ev_timer_start(srv.loop, &resume);
}

void conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    for (int i = 0; i < ACCEPT_BATCH && srv.accepting; i++) {
        len = sizeof ss;
        fd = accept4(w->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(errno);
            else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                as_warn("accept: %s", strerror(errno));
            return;
        }
        if (srv.n_conns >= srv.rt->cfg.max_connections)
            reject(fd);
        else
            conn_new(fd, &ss);
    }
}

/* The response is complete and sent: log, then next request or close. */
static void conn_finish(struct conn *c)
{
    bool pipelined = c->in && c->in->start < c->in->end;

    srv.requests++;
    access_log(c);
    if (!c->keep_alive || (srv.stopping && !pipelined)) {
        if (c->status >= 400 && c->state != C_LINGER) {
            /* Let the client read our answer before unread input resets it. */
            release_request(c);
            shutdown(c->fd, SHUT_WR);
            c->state = C_LINGER;
            watch(c, EV_READ);
            arm(c, LINGER_SECONDS);
            return;
        }
        conn_close(c);
        return;
    }
    release_request(c);
    c->state = C_IDLE;
    if (pipelined) {
        watch(c, EV_READ);
        ev_feed_event(srv.loop, &c->io, EV_READ);   /* parse it on the next turn, not recursively */
        return;
    }
    block_put(c->in);
    c->in = NULL;
    watch(c, EV_READ);
    arm(c, srv.rt->cfg.keepalive_timeout);
}

void conn_flush(struct conn *c)
{
    int r = spool_send(&c->out, c->fd);

    if (r < 0) {
        if (errno != EPIPE && errno != ECONNRESET)
            as_debug("send to %s: %s", c->peer, strerror(errno));
        conn_close(c);
        return;
    }
    if (r == 0) {
        if (!c->writing) {
            c->writing = true;
            watch(c, EV_WRITE);
        }
        arm(c, c->rt ? c->rt->cfg.client_body_timeout : 60);
        return;
    }
    if (c->writing) {
        c->writing = false;
        watch(c, c->resp_done ? EV_READ : 0);
    }
    if (c->resp_done)
        conn_finish(c);
}

void conn_response_started(struct conn *c)
{
    c->state = C_WRITE;
}

void conn_send_error(struct conn *c, int status, bool close_after)
{
    spool_free(&c->out);
    if (close_after)
        c->keep_alive = false;
    c->state = C_WRITE;
    ev_timer_stop(srv.loop, &c->timer);
    watch(c, 0);
    resp_simple(c, status, NULL);
    conn_flush(c);
}

/* Headers are in: limits that need them, 100-continue, body storage. */
static bool on_head(struct conn *c)
{
    struct as_http_request *r = c->req;

    c->head_only = !strcmp(r->method, "HEAD");
    c->client_http10 = r->http_major == 1 && r->http_minor == 0;
    c->keep_alive = r->keep_alive && !srv.stopping;
    if (!strcmp(r->method, "CONNECT")) {
        conn_send_error(c, 405, true);
        return false;
    }
    spool_init(&c->body, c->rt->cfg.client_body_buffer_size, true);
    r->on_body = on_body;
    r->ctx = c;
    if (r->expect_continue && (r->content_length > 0 || r->chunked)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            as_debug("100-continue to %s: %s", c->peer, strerror(errno));
    }
    c->state = C_BODY;
    arm(c, c->rt->cfg.client_body_timeout);
    return true;
}

static void dispatch(struct conn *c)
{
    struct runtime *rt = c->rt;
    char path[PATH_MAX_DECODED];
    const char *rel = NULL;
    size_t idx = 0;

    /* The read watcher stays: stopping and restarting it costs two
     * epoll_ctl per request. on_readable stops it if the client sends
     * while we answer. */
    ev_timer_stop(srv.loop, &c->timer);
    c->state = C_UPSTREAM;
    switch (static_resolve(c->req->target, c->req->target_len, rt->sp, rt->n_locs, path, sizeof path, &idx, &rel)) {
    case SP_STATIC:
        c->static_req = true;
        c->state = C_WRITE;
        static_serve(c, &rt->locs[idx], rel, path);
        conn_flush(c);
        return;
    case SP_NOT_FOUND:
        c->static_req = true;
        c->state = C_WRITE;
        resp_simple(c, 404, NULL);
        conn_flush(c);
        return;
    case SP_BAD_REQUEST:
        conn_send_error(c, 400, true);
        return;
    case SP_FORWARD:
        forward_start(c);
        return;
    }
}

/* Feeds buffered bytes to the parser until a request is complete, more
 * bytes are needed, or an error is answered. */
static void conn_parse(struct conn *c)
{
    struct block *in = c->in;
    struct as_http_request *r = c->req;
    bool force = false;

    for (;;) {
        size_t avail = in->end - in->start;
        if (r->state == AS_HTTP_HEAD || r->state == AS_HTTP_BODY) {
            if (!avail && !force)
                break;
            force = false;
            size_t n = as_http_feed(r, in->data + in->start, avail);
            in->start += n;
            if ((r->state == AS_HTTP_HEAD || r->state == AS_HTTP_BODY) && (in->start == in->end || n == 0))
                break;
        }
        switch (r->state) {
        case AS_HTTP_HEAD:
        case AS_HTTP_BODY:
            continue;
        case AS_HTTP_HEAD_DONE:
            if (!on_head(c))
                return;
            as_http_begin_body(r);
            force = true;
            continue;
        case AS_HTTP_DONE:
            dispatch(c);
            return;
        case AS_HTTP_ERROR:
            as_debug("bad request from %s: %s", c->peer, r->error ? r->error : "?");
            conn_send_error(c, r->status ? r->status : 400, true);
            return;
        }
    }
    if (in->start == in->end)
        in->start = in->end = 0;
}

/* Request state on the first byte of a request. */
static void begin_request(struct conn *c)
{
    if (!c->rt)
        c->rt = runtime_get(srv.rt);
    if (!c->req)
        c->req = parser_get(&c->rt->limits);
    if (c->state == C_IDLE) {
        c->state = C_HEAD;
        c->t0 = ev_time();
        arm(c, c->rt->cfg.client_header_timeout);
    }
}

static void linger_read(struct conn *c)
{
    char sink[4096];
    ssize_t n;

    do
        n = recv(c->fd, sink, sizeof sink, 0);
    while (n > 0);
    if (n == 0 || errno != EAGAIN)
        conn_close(c);
}

static void on_readable(struct conn *c)
{
    ssize_t n;

    if (c->state == C_LINGER) {
        linger_read(c);
        return;
    }
    if (c->state != C_IDLE && c->state != C_HEAD && c->state != C_BODY) {
        watch(c, 0);            /* pipelined input waits for the answer */
        return;
    }
    if (!c->in)
        c->in = block_get();
    if (c->in->start < c->in->end && c->state == C_IDLE) {
        begin_request(c);       /* pipelined bytes from the previous request */
        conn_parse(c);
        return;
    }
    if (c->in->end == BLOCK_SIZE && c->in->start > 0) {
        memmove(c->in->data, c->in->data + c->in->start, c->in->end - c->in->start);
        c->in->end -= c->in->start;
        c->in->start = 0;
    }
    n = recv(c->fd, c->in->data + c->in->end, BLOCK_SIZE - c->in->end, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);          /* the client went away */
        return;
    }
    c->in->end += (size_t)n;
    begin_request(c);
    if (c->state == C_BODY)
        arm(c, c->rt->cfg.client_body_timeout);
    conn_parse(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, io));

    if (revents & EV_WRITE) {
        conn_flush(c);
        return;
    }
    if (revents & EV_READ)
        on_readable(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, timer));

    switch (c->state) {
    case C_HEAD:
    case C_BODY:
        if (!c->req) {
            conn_close(c);
            return;
        }
        conn_send_error(c, 408, true);
        return;
    case C_IDLE:
    case C_WRITE:
    case C_LINGER:
    case C_UPSTREAM:
        conn_close(c);
        return;
    }
}

/* TERM: every connection closes after its next response. One between
 * requests gets a moment first: its client may be sending a request right
 * now, and closing under it would lose that request. */
void conns_stop_idle(void)
{
    for (struct conn *c = srv.conns; c; c = c->next) {
        c->keep_alive = false;
        if (c->state == C_IDLE)
            arm(c, STOP_IDLE_GRACE);
    }
}
