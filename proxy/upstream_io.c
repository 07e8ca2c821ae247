/* Exchanges over an upstream connection: connect, send the buffered
 * request, parse the response (llhttp, response mode) as fast as the worker
 * writes it. The head goes to forward.c to become the client's, the body
 * straight into the exchange's response, and every failure to forward.c,
 * which knows what the client may still be told.
 *
 * A second request may be pipelined behind the one in progress (balancer.c
 * decides when): it is sent at once, and its response is parsed when the
 * first one's is complete, from the bytes that followed it. */
#include "upstream.h"
#include "site.h"
#include "worker_ident.h"
#include "tunnel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static llhttp_settings_t settings;
static ev_prepare flush_w;
static struct upconn *flush_list;

static void up_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static int pipe_send(struct upconn *u);
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
    if (timeout > 0) {
        u->timer.repeat = timeout;
        ev_timer_again(srv.loop, &u->timer);
    }
}

/* Sends the current request, then what was pipelined behind it. */
static void up_send(struct upconn *u)
{
    int r = spool_send(&u->x->body, u->fd);

    if (r < 0) {
        forward_broken(u->x, errno, false);
        return;
    }
    u->sending = r == 0;
    if (!u->sending) {
        if (u->pipe_out && u->pipe_out->start < u->pipe_out->end) {
            r = pipe_send(u);
            if (r < 0) {
                forward_broken(u->x, errno, false);
                return;
            }
            up_watch(u, r ? EV_READ | EV_WRITE : EV_READ, u->x->site->read_timeout);
            return;
        }
    }
    up_watch(u, u->sending ? EV_READ | EV_WRITE : EV_READ, u->x->site->read_timeout);
}

/* Ready to parse X's response. */
static void parse_begin(struct upconn *u, struct exchange *x)
{
    u->x = x;
    u->got_bytes = u->head_done = u->msg_done = false;
    u->in_value = false;
    u->n_hdr = 0;
    u->st_len = 0;
    u->head_len = 0;
    llhttp_init(&u->parser, HTTP_RESPONSE, &settings);
    u->parser.data = u;
}

void upconn_start(struct upconn *u, struct exchange *x)
{
    x->up = u;
    parse_begin(u, x);
    if (!u->rbuf)
        u->rbuf = block_get();
    u->rbuf->start = u->rbuf->end = 0;
    spool_rewind(&x->body);
    if (u->connecting) {
        up_watch(u, EV_WRITE, x->site->connect_timeout);
        return;
    }
    up_send(u);
}

bool upconn_pipe_room(const struct upconn *u, uint64_t len)
{
    return len <= UPSTREAM_PIPELINE_HEAD && (!u->pipe_out || BLOCK_SIZE - u->pipe_out->end >= len);
}

void upconn_pipeline(struct upconn *u, struct exchange *x)
{
    struct block *b;

    x->up = u;
    x->pipe_next = NULL;
    if (u->pipe_tail)
        u->pipe_tail->pipe_next = x;
    else
        u->pipe_head = x;
    u->pipe_tail = x;
    u->n_pipe++;
    if (!u->pipe_out) {
        u->pipe_out = block_get();
        u->pipe_out->start = u->pipe_out->end = 0;
    }
    b = u->pipe_out;
    /* A GET without a body: its spool is the head, in memory. */
    for (struct block *h = x->body.head; h; h = h->next) {
        memcpy(b->data + b->end, h->data + h->start, h->end - h->start);
        b->end += h->end - h->start;
    }
    if (!u->flush_queued) {
        u->flush_queued = true;
        u->flush_next = flush_list;
        flush_list = u;
    }
}

void upconn_forget(struct upconn *u)
{
    struct upconn **p;

    if (u->flush_queued) {
        for (p = &flush_list; *p != u; p = &(*p)->flush_next)
            ;
        *p = u->flush_next;
        u->flush_queued = false;
    }
    block_put(u->pipe_out);
    u->pipe_out = NULL;
}

/* Sends what was pipelined; 0 when all is sent, 1 when the socket is
 * full, -1 on error. */
static int pipe_send(struct upconn *u)
{
    struct block *b = u->pipe_out;

    while (b && b->start < b->end) {
        ssize_t n = send(u->fd, b->data + b->start, b->end - b->start, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 1 : -1;
        }
        b->start += (size_t)n;
    }
    if (b)
        b->start = b->end = 0;
    return 0;
}

/* The end of the loop turn: every connection's pipelined requests, one
 * write each. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    while (flush_list) {
        struct upconn *u = flush_list;
        int r;
        flush_list = u->flush_next;
        u->flush_queued = false;
        if (u->sending)
            continue;           /* after the current request: the write watcher sends it */
        r = pipe_send(u);
        if (r < 0)
            forward_broken(u->x, errno, false);
        else if (r > 0)
            up_watch(u, EV_READ | EV_WRITE, 0);
    }
}

/* "TOKEN CAPACITY" (worker_ident.h) from the interim response's fields. */
static bool worker_said(struct upconn *u, uint64_t *token, int *capacity)
{
    for (int i = 0; i < u->n_hdr; i++)
        if (u->hdr[i].nl == sizeof AS_WORKER_FIELD - 1
            && !strncasecmp(u->head + u->hdr[i].no, AS_WORKER_FIELD, u->hdr[i].nl))
            return as_worker_ident_parse(u->head + u->hdr[i].vo, u->hdr[i].vl, token, capacity);
    return false;
}

static int on_headers_complete(llhttp_t *p)
{
    struct upconn *u = p->data;
    uint64_t token;
    int capacity;

    if (p->status_code < 200) {
        /* 1xx: interim, not for the client; perhaps the worker saying who it is */
        if (u->unknown && worker_said(u, &token, &capacity))
            upstream_identified(u, token, capacity);
        return 0;
    }
    if (u->unknown)
        upstream_anonymous(u);
    if (!tunnel_answer_ok(u->x, p->status_code)) {
        as_warn("upstream %s: %d, not 101, to a WebSocket request over HTTP/2: 502", u->u->name, p->status_code);
        return -1;              /* parse_at answers 502 */
    }
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

    if (p->status_code == 101)
        return 0;               /* llhttp stops after it: tunnel_start */
    if (p->status_code < 200) {
        u->n_hdr = 0;
        u->st_len = 0;
        u->in_value = false;
        u->got_bytes = false;   /* an interim answer, never the client's: a retry is still safe */
        return 0;
    }
    u->msg_done = true;
    return HPE_PAUSED;
}

/* A response's first byte: from here a connection that breaks has answered
 * in part (an interim 1xx, such as a worker saying who it is, ends above
 * without counting). */
static int on_message_begin(llhttp_t *p)
{
    ((struct upconn *)p->data)->got_bytes = true;
    return 0;
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
    ev_prepare_init(&flush_w, flush_cb);
    ev_prepare_start(srv.loop, &flush_w);
    ev_unref(srv.loop);         /* it alone does not keep the loop running */
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_status = on_status;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body_cb;
    settings.on_message_complete = on_message_complete;
}

static bool parse_pending(struct upconn *u);

/* Puts N bytes in front of what waits to be parsed. */
static bool pend_prepend(struct upconn *u, const char *p, size_t n)
{
    if (u->pend_len + n > u->pend_cap) {
        size_t cap = u->pend_cap ? u->pend_cap : 4096;
        char *q;
        while (cap < u->pend_len + n)
            cap *= 2;
        if (!(q = realloc(u->pend, cap)))
            return false;
        u->pend = q;
        u->pend_cap = cap;
    }
    memmove(u->pend + n, u->pend, u->pend_len);
    memcpy(u->pend, p, n);
    u->pend_len += n;
    return true;
}

/* The whole response is read, and LEFTOVER bytes at END followed it. They
 * are the start of the next response when a request is pipelined;
 * otherwise the connection cannot be trusted with another request. */
static void complete(struct upconn *u, const char *end, size_t leftover)
{
    bool keep = llhttp_should_keep_alive(&u->parser);

    if (!u->pipe_head || !keep || u->close_after) {
        /* upstream_release sends pipelined requests again elsewhere */
        forward_response_done(u->x, keep && !leftover && !u->pend_len);
        return;
    }
    if (leftover && !pend_prepend(u, end, leftover)) {
        as_err("out of memory for a response");
        forward_fail(u->x, 502);
        return;
    }
    forward_response_done(u->x, true);     /* u->x becomes the pipelined one */
    parse_begin(u, u->x);
    u->timer.repeat = u->x->site->read_timeout;
    ev_timer_again(srv.loop, &u->timer);
    parse_pending(u);
}

static void up_eof(struct upconn *u, int err)
{
    struct exchange *x = u->x;

    if (!err && u->head_done) {
        llhttp_finish(&u->parser);  /* ends a body delimited by the close */
        if (u->msg_done) {
            forward_response_done(x, false);
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
    size_t limit = u->x->rt->cfg.proxy_buffer_size, cap;
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

/* Where the next bytes go: the head buffer while the head is read, then
 * the read block. NULL when the head outgrew its limit (answered). */
static char *read_room(struct upconn *u, size_t *room)
{
    if (!u->head_done) {
        if (!head_room(u))
            return NULL;
        *room = u->head_cap - u->head_len;
        return u->head + u->head_len;
    }
    u->rbuf->start = u->rbuf->end = 0;
    *room = BLOCK_SIZE;
    return u->rbuf->data;
}

/* Parses N new bytes at DST (from read_room). True while the same response
 * goes on; false when it ended (complete() took the rest) or failed. */
static bool parse_at(struct upconn *u, char *dst, size_t n)
{
    bool in_head = dst != u->rbuf->data;
    llhttp_errno_t e;

    e = llhttp_execute(&u->parser, dst, n);
    if (in_head)
        u->head_len += n;
    else
        u->rbuf->end += n;
    if (e == HPE_PAUSED && u->msg_done) {
        const char *end = llhttp_get_error_pos(&u->parser);
        complete(u, end, (size_t)(dst + n - end));
        return false;
    }
    if (e == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&u->parser);
        tunnel_start(u, pos, (size_t)(dst + n - pos));
        return false;
    }
    if (e != HPE_OK) {
        if (e != HPE_CB_HEADERS_COMPLETE)       /* on_headers_complete said why */
            as_warn("upstream %s: bad response: %s", u->u->name, llhttp_get_error_reason(&u->parser));
        forward_fail(u->x, 502);
        return false;
    }
    if (u->head_done)
        resp_output(u->x);
    return true;
}

/* Bytes read past the end of the last response: the start of the
 * pipelined one's, parsed as if just read. */
static bool parse_pending(struct upconn *u)
{
    while (u->pend_len) {
        size_t room, k;
        char *dst = read_room(u, &room);
        if (!dst)
            return false;
        k = room < u->pend_len ? room : u->pend_len;
        memcpy(dst, u->pend, k);
        memmove(u->pend, u->pend + k, u->pend_len - k);
        u->pend_len -= k;
        if (!parse_at(u, dst, k))
            return false;
    }
    return true;
}

static void up_read(struct upconn *u)
{
    size_t room;
    char *dst = read_room(u, &room);
    ssize_t n;

    if (!dst)
        return;
    n = recv(u->fd, dst, room, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        up_eof(u, n < 0 ? errno : 0);
        return;
    }
    ev_timer_again(srv.loop, &u->timer);
    parse_at(u, dst, (size_t)n);
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
    if ((revents & EV_WRITE) && u->sending) {
        up_send(u);
        return;
    }
    if (revents & EV_WRITE) {
        int r = pipe_send(u);
        if (r < 0)
            forward_broken(u->x, errno, false);
        else if (r == 0)
            up_watch(u, EV_READ, 0);
    }
}

static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct upconn *u = (struct upconn *)((char *)w - offsetof(struct upconn, timer));
    struct exchange *x = u->x;

    if (u->connecting) {
        as_warn("upstream %s: connect timed out", u->u->name);
        upstream_fault(u->u, "connect timed out");
    } else {
        as_warn("upstream %s: %s %.*s: no response within %gs", u->u->name, x->req->method,
                (int)x->req->target_len, x->req->target, x->site->read_timeout);
        upstream_fault(u->u, "no response in time");
    }
    forward_timed_out(x, u->connecting);
}
