/* One exchange over an upstream connection: connect, send the buffered
 * request, parse the response (llhttp, response mode) as fast as the worker
 * writes it. The head goes to forward.c to become the client's, the body
 * straight into the exchange's response, and every failure to forward.c,
 * which knows what the client may still be told. */
#include "upstream.h"
#include "site.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static llhttp_settings_t settings;

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

void upconn_init(struct upconn *u)
{
    ev_io_init(&u->io, up_io_cb, u->fd, EV_READ);
    ev_init(&u->timer, up_timer_cb);
}

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

static void up_send(struct upconn *u)
{
    struct exchange *x = u->x;
    int r = spool_send(&x->body, u->fd);

    if (r < 0) {
        forward_broken(x, errno, false);
        return;
    }
    u->sending = r == 0;
    up_watch(u, r == 0 ? EV_READ | EV_WRITE : EV_READ, x->site->read_timeout);
}

void upconn_start(struct upconn *u, struct exchange *x)
{
    x->up = u;
    u->x = x;
    u->got_bytes = u->head_done = u->msg_done = false;
    u->in_value = false;
    u->n_hdr = 0;
    u->st_len = 0;
    u->head_len = 0;
    if (!u->rbuf)
        u->rbuf = block_get();
    u->rbuf->start = u->rbuf->end = 0;
    llhttp_init(&u->parser, HTTP_RESPONSE, &settings);
    u->parser.data = u;
    spool_rewind(&x->body);
    if (u->connecting) {
        up_watch(u, EV_WRITE, x->site->connect_timeout);
        return;
    }
    up_send(u);
}

static int on_headers_complete(llhttp_t *p)
{
    struct upconn *u = p->data;

    if (p->status_code < 200)
        return 0;               /* 1xx: interim, not for the client */
    forward_response_head(u->x, u);
    u->head_done = true;
    return u->x->head_only ? 1 : 0;
}

static int on_body_cb(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;

    return resp_body(u->x, at, len) < 0 ? -1 : 0;
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
    u->msg_done = true;
    return HPE_PAUSED;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;

    if (!u->st_len)
        u->st_off = (uint32_t)(at - u->head);
    u->st_len = (uint32_t)(u->st_len + len);
    return 0;
}

/* Header names and values may arrive in pieces; they are contiguous in
 * rbuf, so a piece extends the span. */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct upconn *u = p->data;

    if (u->n_hdr && !u->in_value) {
        u->hdr[u->n_hdr - 1].nl = (uint32_t)(u->hdr[u->n_hdr - 1].nl + len);
        return 0;
    }
    if (u->n_hdr == u->cap_hdr) {
        /* No count limit of its own: the head's size (proxy_buffer_size)
         * bounds it, as in nginx. */
        int cap = u->cap_hdr ? u->cap_hdr * 2 : 32;
        struct resp_span *p2 = realloc(u->hdr, (size_t)cap * sizeof *p2);
        if (!p2)
            return -1;
        u->hdr = p2;
        u->cap_hdr = cap;
    }
    u->hdr[u->n_hdr].no = (uint32_t)(at - u->head);
    u->hdr[u->n_hdr].nl = (uint32_t)len;
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
        u->hdr[u->n_hdr - 1].vo = (uint32_t)(at - u->head);
        u->in_value = true;
    }
    u->hdr[u->n_hdr - 1].vl = (uint32_t)(u->hdr[u->n_hdr - 1].vl + len);
    return 0;
}

void upconn_init_parser(void)
{
    llhttp_settings_init(&settings);
    settings.on_status = on_status;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body_cb;
    settings.on_message_complete = on_message_complete;
}

/* The whole response is read: LEFTOVER bytes after it mean the connection
 * cannot be trusted with another request. */
static void complete(struct upconn *u, bool leftover)
{
    forward_response_done(u->x, !leftover && llhttp_should_keep_alive(&u->parser));
}

static void up_eof(struct upconn *u, int err)
{
    struct exchange *x = u->x;

    if (!err && u->head_done) {
        llhttp_finish(&u->parser);  /* ends a body delimited by the close */
        if (u->msg_done) {
            complete(u, true);
            return;
        }
    }
    if (!u->got_bytes) {
        forward_broken(x, err, false);
        return;
    }
    as_warn("upstream %s: %s %.*s: response %s", u->u->name, x->req->method, (int)x->req->target_len,
            x->req->target, err ? strerror(err) : "cut short");
    forward_fail(x, 502);
}

/* Room for more of the response head: the buffer doubles up to
 * proxy_buffer_size. False (and 502, logged with the limit's name) beyond. */
static bool head_room(struct upconn *u)
{
    size_t limit = u->rt->cfg.proxy_buffer_size, cap;
    char *p;

    if (u->head_len < u->head_cap)
        return true;
    if (u->head_cap >= limit) {
        as_warn("upstream %s: %s %.*s: response head larger than proxy_buffer_size (%zu bytes): 502",
                u->u->name, u->x->req->method, (int)u->x->req->target_len, u->x->req->target, limit);
        forward_fail(u->x, 502);
        return false;
    }
    cap = u->head_cap ? u->head_cap * 2 : 4096;
    if (cap > limit)
        cap = limit;
    if (!(p = realloc(u->head, cap))) {
        as_err("out of memory for a response head");
        forward_fail(u->x, 502);
        return false;
    }
    u->head = p;
    u->head_cap = cap;
    return true;
}

static void up_read(struct upconn *u)
{
    struct block *b = u->rbuf;
    bool in_head = !u->head_done;
    llhttp_errno_t e;
    char *dst;
    size_t room;
    ssize_t n;

    if (in_head) {
        if (!head_room(u))
            return;
        dst = u->head + u->head_len;
        room = u->head_cap - u->head_len;
    } else {
        b->start = b->end = 0;
        dst = b->data;
        room = BLOCK_SIZE;
    }
    n = recv(u->fd, dst, room, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        up_eof(u, n < 0 ? errno : 0);
        return;
    }
    u->got_bytes = true;
    ev_timer_again(srv.loop, &u->timer);
    e = llhttp_execute(&u->parser, dst, (size_t)n);
    if (in_head)
        u->head_len += (size_t)n;
    else
        b->end += (size_t)n;
    if (e == HPE_PAUSED && u->msg_done) {
        complete(u, llhttp_get_error_pos(&u->parser) != dst + n);
        return;
    }
    if (e != HPE_OK) {
        as_warn("upstream %s: bad response: %s", u->u->name, llhttp_get_error_reason(&u->parser));
        forward_fail(u->x, 502);
        return;
    }
    if (u->head_done)
        resp_output(u->x);
}

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct upconn *u = (struct upconn *)w;
    int err = 0;
    socklen_t len = sizeof err;

    if (!u->x) {
        upstream_idle_event(u);
        return;
    }
    if (u->connecting) {
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            forward_broken(u->x, err, true);
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
    struct exchange *x = u->x;

    if (u->connecting) {
        as_warn("upstream %s: connect timed out", u->u->name);
        upstream_failed(u->u);
    } else {
        as_warn("upstream %s: %s %.*s: no response within %gs", u->u->name, x->req->method,
                (int)x->req->target_len, x->req->target, x->site->read_timeout);
    }
    forward_fail(x, 504);
}
