/* Forwarding: the buffered request goes to an upstream with cleaned headers
 * and a Content-Length; the response is parsed (llhttp, response mode) and
 * queued for the client as fast as the worker writes it, so the worker is
 * free long before a slow client has read it. */
#include "proxy.h"
#include "resp.h"
#include "fmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static llhttp_settings_t settings;

/* Hop-by-hop (RFC 9110 7.6.1) and the ones the proxy writes itself. Lengths
 * are kept so that most headers are ruled out by one integer compare. */
struct name {
    const char *s;
    size_t n;
};
#define NAME(x) { x, sizeof x - 1 }
static const struct name req_drop[] = {
    NAME("Connection"), NAME("Keep-Alive"), NAME("Proxy-Connection"), NAME("TE"), NAME("Trailer"),
    NAME("Transfer-Encoding"), NAME("Upgrade"), NAME("Content-Length"), NAME("Expect"),
    NAME("X-Forwarded-For"), NAME("X-Forwarded-Proto"), NAME("X-Forwarded-Host"), { NULL, 0 }
};
static const struct name resp_drop[] = {
    NAME("Connection"), NAME("Keep-Alive"), NAME("Proxy-Connection"), NAME("TE"), NAME("Trailer"),
    NAME("Transfer-Encoding"), NAME("Upgrade"), { NULL, 0 }
};

static bool in_list(const struct name *list, const char *name, size_t len)
{
    for (; list->s; list++)
        if (list->n == len && !strncasecmp(list->s, name, len))
            return true;
    return false;
}

/* Is NAME one of the comma-separated tokens of V? */
static bool in_tokens(const char *v, size_t vlen, const char *name, size_t len)
{
    const char *end = v + vlen;

    while (v < end) {
        const char *s, *e;
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        s = v;
        while (v < end && *v != ',')
            v++;
        e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == len && !strncasecmp(s, name, len))
            return true;
    }
    return false;
}

static bool idempotent(const char *m)
{
    static const char *const ok[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };

    for (const char *const *p = ok; *p; p++)
        if (!strcmp(m, *p))
            return true;
    return false;
}

/* Heads are many small pieces: they are gathered on the stack and reach the
 * spool in a few appends instead of four per header. */
struct headw {
    struct spool *s;
    size_t len;
    char buf[4096];
};

static void hw_flush(struct headw *w)
{
    spool_append(w->s, w->buf, w->len);
    w->len = 0;
}

static void put(struct headw *w, const char *p, size_t n)
{
    if (n > sizeof w->buf - w->len) {
        hw_flush(w);
        if (n > sizeof w->buf) {
            spool_append(w->s, p, n);
            return;
        }
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void put_str(struct headw *w, const char *p)
{
    put(w, p, strlen(p));
}

static void put_u64(struct headw *w, uint64_t v)
{
    char t[20];

    put(w, t, fmt_utoa(v, t));
}

static void put_header(struct headw *w, const char *name, size_t nl, const char *value, size_t vl)
{
    put(w, name, nl);
    put(w, ": ", 2);
    put(w, value, vl);
    put(w, "\r\n", 2);
}

/* The request line and cleaned headers, then the X-Forwarded-* trio. */
static void build_head(struct conn *c, struct headw *h)
{
    const struct as_http_request *r = c->req;
    const struct as_http_header *conn_h = as_http_header(r, "Connection");
    const struct as_http_header *xff = as_http_header(r, "X-Forwarded-For");
    const struct as_http_header *host = as_http_header(r, "Host");
    uint64_t len = c->body.total;

    put_str(h, r->method);
    put(h, " ", 1);
    put(h, r->target, r->target_len);
    put(h, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct as_http_header *x = &r->headers[i];
        if (in_list(req_drop, x->name, x->name_len))
            continue;
        if (conn_h && in_tokens(conn_h->value, conn_h->value_len, x->name, x->name_len))
            continue;
        put_header(h, x->name, x->name_len, x->value, x->value_len);
    }
    put(h, "X-Forwarded-For: ", 17);
    if (xff && xff->value_len) {
        put(h, xff->value, xff->value_len);
        put(h, ", ", 2);
    }
    put(h, c->peer, strlen(c->peer));
    put(h, "\r\nX-Forwarded-Proto: http\r\n", 27);
    if (host)
        put_header(h, "X-Forwarded-Host", 16, host->value, host->value_len);
    if (len || r->content_length >= 0 || r->chunked || !strcmp(r->method, "POST")
        || !strcmp(r->method, "PUT") || !strcmp(r->method, "PATCH")) {
        put(h, "Content-Length: ", 16);
        put_u64(h, len);
        put(h, "\r\n", 2);
    }
    put(h, "\r\n", 2);
}

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void attempt(struct conn *c, bool fresh, struct upstream *avoid);

/* Changes the watched events only when they differ: each change is an
 * epoll_ctl. */
static void up_watch(struct upconn *u, int events, double timeout)
{
    if (!ev_is_active(&u->io) || (u->io.events & (EV_READ | EV_WRITE)) != events) {
        ev_io_stop(srv.loop, &u->io);
        ev_io_set(&u->io, u->fd, events);
        ev_io_start(srv.loop, &u->io);
    }
    u->timer.repeat = timeout;
    ev_timer_again(srv.loop, &u->timer);
}

void forward_init_upconn(struct upconn *u)
{
    ev_io_init(&u->io, up_io_cb, u->fd, EV_READ);
    ev_init(&u->timer, up_timer_cb);
}

void forward_detach(struct conn *c)
{
    struct upconn *u = c->up;

    if (!u)
        return;
    c->up = NULL;
    upstream_release(u, false);
}

/* No usable response: answer STATUS unless part of one went out already. */
static void fail(struct conn *c, int status)
{
    struct upconn *u = c->up;

    if (u && u->head_done) {
        conn_abort(c);          /* the client saw a head: only a close can say it broke */
        return;
    }
    forward_detach(c);
    conn_send_error(c, status, false);
}

/* The connection broke before a response byte: retry when that is safe. */
static void broken(struct conn *c, int err, bool connect_failed)
{
    struct upconn *u = c->up;
    struct upstream *up = u->u;
    bool reused = u->reused;

    as_warn("upstream %s: %s %s: %s", up->name, c->req->method,
            connect_failed ? "connect" : "no response", err ? strerror(err) : "connection closed");
    forward_detach(c);
    if (connect_failed) {
        upstream_failed(up);
        if (c->tries < (int)c->rt->n_ups + 1) {
            attempt(c, true, up);   /* nothing was sent: any method may go elsewhere */
            return;
        }
    } else if (reused && c->tries < 2) {
        attempt(c, true, NULL);     /* a pooled connection the worker had closed */
        return;
    } else if (idempotent(c->req->method) && c->tries < 3) {
        attempt(c, true, up);
        return;
    }
    fail(c, 502);
}

static void up_send(struct upconn *u)
{
    struct conn *c = u->c;
    int r = spool_send(&c->body, u->fd);

    if (r < 0) {
        broken(c, errno, false);
        return;
    }
    u->sending = r == 0;
    up_watch(u, r == 0 ? EV_READ | EV_WRITE : EV_READ, c->rt->cfg.proxy_read_timeout);
}

static void attempt(struct conn *c, bool fresh, struct upstream *avoid)
{
    struct upconn *u;

    /* A refused connect costs nothing to retry elsewhere: nothing was sent. */
    for (;;) {
        u = upstream_take(c, fresh, avoid);
        c->tries++;
        if (u)
            break;
        if (c->tries > (int)c->rt->n_ups) {
            fail(c, 502);
            return;
        }
        avoid = c->upstream;
        fresh = true;
    }
    c->up = u;
    u->c = c;
    u->got_bytes = u->head_done = u->msg_done = u->chunk_out = u->close_out = false;
    u->in_value = false;
    u->n_hdr = 0;
    u->st_len = 0;
    if (!u->rbuf)
        u->rbuf = block_get();
    u->rbuf->start = u->rbuf->end = 0;
    llhttp_init(&u->parser, HTTP_RESPONSE, &settings);
    u->parser.data = u;
    spool_rewind(&c->body);
    if (u->connecting) {
        up_watch(u, EV_WRITE, c->rt->cfg.proxy_connect_timeout);
        return;
    }
    up_send(u);
}

void forward_start(struct conn *c)
{
    struct spool head;
    struct headw w;

    spool_init(&head, SIZE_MAX, false);
    w.s = &head;
    w.len = 0;
    build_head(c, &w);
    hw_flush(&w);
    spool_prepend(&c->body, &head);
    c->tries = 0;
    c->state = C_UPSTREAM;
    attempt(c, false, NULL);
}

/* The client's response head from the upstream's. */
static int on_headers_complete(llhttp_t *p)
{
    struct upconn *u = p->data;
    struct conn *c = u->c;
    const char *b = u->rbuf->data;
    int status = p->status_code;
    bool chunked = p->flags & F_CHUNKED, has_len = p->flags & F_CONTENT_LENGTH;
    struct headw w;

    if (status < 200)
        return 0;               /* 1xx: interim, not for the client */
    c->status = status;
    w.s = &c->out;
    w.len = 0;
    put(&w, "HTTP/1.1 ", 9);
    put_u64(&w, (uint64_t)status);
    put(&w, " ", 1);
    put(&w, b + u->st_off, u->st_len);
    put(&w, "\r\n", 2);
    for (int i = 0; i < u->n_hdr; i++) {
        const char *name = b + u->hdr[i].no;
        if (in_list(resp_drop, name, u->hdr[i].nl))
            continue;
        put_header(&w, name, u->hdr[i].nl, b + u->hdr[i].vo, u->hdr[i].vl);
    }
    if (!c->head_only && status != 204 && status != 304 && !has_len) {
        if (chunked && !c->client_http10) {
            u->chunk_out = true;
            put(&w, "Transfer-Encoding: chunked\r\n", 28);
        } else {
            u->close_out = true;    /* the body ends when we close */
            c->keep_alive = false;
        }
    }
    hw_flush(&w);
    resp_end_head(c);
    u->head_done = true;
    conn_response_started(c);
    return c->head_only ? 1 : 0;
}

static int on_body_cb(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;
    struct spool *out = &u->c->out;
    char size[18];
    size_t n;

    if (u->chunk_out) {
        n = fmt_hex(len, size);
        size[n++] = '\r';
        size[n++] = '\n';
        if (spool_append(out, size, n) < 0)
            return -1;
    }
    if (spool_append(out, at, len) < 0)
        return -1;
    if (u->chunk_out && spool_append(out, "\r\n", 2) < 0)
        return -1;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct upconn *u = p->data;

    if (p->status_code < 200) {
        u->n_hdr = 0;
        u->st_len = 0;
        u->in_value = false;
        return 0;
    }
    if (u->chunk_out)
        spool_append(&u->c->out, "0\r\n\r\n", 5);
    u->msg_done = true;
    return HPE_PAUSED;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;

    if (!u->st_len)
        u->st_off = (uint16_t)(at - u->rbuf->data);
    u->st_len = (uint16_t)(u->st_len + len);
    return 0;
}

/* Header names and values may arrive in pieces; they are contiguous in
 * rbuf, so a piece extends the span. */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;

    if (u->n_hdr && !u->in_value) {
        u->hdr[u->n_hdr - 1].nl = (uint16_t)(u->hdr[u->n_hdr - 1].nl + len);
        return 0;
    }
    if (u->n_hdr == MAX_RESP_HEADERS)
        return -1;
    u->hdr[u->n_hdr].no = (uint16_t)(at - u->rbuf->data);
    u->hdr[u->n_hdr].nl = (uint16_t)len;
    u->hdr[u->n_hdr].vo = u->hdr[u->n_hdr].vl = 0;
    u->n_hdr++;
    u->in_value = false;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;

    if (!u->n_hdr)
        return -1;
    if (!u->in_value) {
        u->hdr[u->n_hdr - 1].vo = (uint16_t)(at - u->rbuf->data);
        u->in_value = true;
    }
    u->hdr[u->n_hdr - 1].vl = (uint16_t)(u->hdr[u->n_hdr - 1].vl + len);
    return 0;
}

void forward_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_status = on_status;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body_cb;
    settings.on_message_complete = on_message_complete;
}

/* The whole response is queued: the upstream goes back to the pool. */
static void complete(struct upconn *u, bool leftover)
{
    struct conn *c = u->c;
    bool reusable = !leftover && !u->close_out && llhttp_should_keep_alive(&u->parser);

    c->up = NULL;
    upstream_release(u, reusable);
    c->resp_done = true;
    conn_flush(c);
}

static void up_eof(struct upconn *u, int err)
{
    struct conn *c = u->c;

    if (!err && u->head_done) {
        llhttp_finish(&u->parser);  /* ends a body delimited by the close */
        if (u->msg_done) {
            complete(u, true);
            return;
        }
    }
    if (!u->got_bytes) {
        broken(c, err, false);
        return;
    }
    as_warn("upstream %s: %s %.*s: response %s", u->u->name, c->req->method, (int)c->req->target_len,
            c->req->target, err ? strerror(err) : "cut short");
    fail(c, 502);
}

static void up_read(struct upconn *u)
{
    struct conn *c = u->c;
    struct block *b = u->rbuf;
    llhttp_errno_t e;
    ssize_t n;

    if (u->head_done)
        b->start = b->end = 0;  /* head spans are no longer needed */
    if (b->end == BLOCK_SIZE) {
        as_warn("upstream %s: response head larger than %d bytes", u->u->name, BLOCK_SIZE);
        fail(c, 502);
        return;
    }
    n = recv(u->fd, b->data + b->end, BLOCK_SIZE - b->end, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        up_eof(u, n < 0 ? errno : 0);
        return;
    }
    u->got_bytes = true;
    ev_timer_again(srv.loop, &u->timer);
    e = llhttp_execute(&u->parser, b->data + b->end, (size_t)n);
    b->end += (size_t)n;
    if (e == HPE_PAUSED && u->msg_done) {
        complete(u, llhttp_get_error_pos(&u->parser) != b->data + b->end);
        return;
    }
    if (e != HPE_OK) {
        as_warn("upstream %s: bad response: %s", u->u->name, llhttp_get_error_reason(&u->parser));
        fail(c, 502);
        return;
    }
    if (u->head_done)
        conn_flush(c);
}

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct upconn *u = (struct upconn *)w;
    int err = 0;
    socklen_t len = sizeof err;

    if (!u->c) {
        upstream_idle_event(u);
        return;
    }
    if (u->connecting) {
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            broken(u->c, err, true);
            return;
        }
        u->connecting = false;
        up_send(u);
        return;
    }
    if (revents & EV_READ) {
        up_read(u);
        return;
    }
    if ((revents & EV_WRITE) && u->sending)
        up_send(u);
}

static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct upconn *u = (struct upconn *)((char *)w - offsetof(struct upconn, timer));
    struct conn *c = u->c;

    if (u->connecting) {
        as_warn("upstream %s: connect timed out", u->u->name);
        upstream_failed(u->u);
    } else {
        as_warn("upstream %s: %s %.*s: no response within %gs", u->u->name, c->req->method,
                (int)c->req->target_len, c->req->target, c->rt->cfg.proxy_read_timeout);
    }
    fail(c, 504);
}
