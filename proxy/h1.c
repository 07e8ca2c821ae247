/* HTTP/1.1 on a client connection: request heads and bodies through the
 * shared parser, one exchange at a time, responses in order (pipelined
 * requests wait in the read buffer until the answer before them is sent),
 * keep-alive, the lingering close after an error. An idle keep-alive
 * connection holds no buffer and no exchange: they come from free lists
 * when a request starts and go back when it ends. */
#include "exchange.h"
#include "http_reply.h"
#include "linger.h"
#include "metrics.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define STOP_IDLE_GRACE 1.0         /* s an idle connection may still send at TERM */

enum h1_state {
    H1_IDLE,        /* keep-alive, between requests */
    H1_HEAD,        /* reading a request head */
    H1_BODY,        /* reading its body */
    H1_BUSY,        /* the request is read: waiting for the upstream, or sending the response */
    H1_LINGER,      /* error sent, draining input before close */
};

static void h1_start(struct conn *c)
{
    c->state = H1_IDLE;
    c->fresh = true;
    conn_watch(c, EV_READ);
    conn_arm(c, srv.rt->cfg.client_header_timeout);
}

/* The response is complete and sent: the exchange ends, then the next
 * request, a lingering close after an error, or a close. */
static void h1_finish(struct conn *c)
{
    struct exchange *x = c->x;
    bool pipelined = c->in && c->in->start < c->in->end;
    bool keep_alive = x->keep_alive, error = x->status >= 400;

    c->x = NULL;
    exchange_finish(x, true);
    if (!keep_alive || (srv.stopping && !pipelined)) {
        if (error) {
            /* Let the client read our answer before unread input resets it. */
            c->tp->shutdown(c);
            c->state = H1_LINGER;
            conn_watch(c, EV_READ);
            conn_arm(c, AS_LINGER_SECONDS);
            return;
        }
        conn_close(c);
        return;
    }
    c->state = H1_IDLE;
    if (pipelined) {
        conn_watch(c, EV_READ);
        ev_feed_event(srv.loop, &c->io, EV_READ);   /* parse it on the next turn, not recursively */
        return;
    }
    block_put(c->in);
    c->in = NULL;
    conn_watch(c, EV_READ);
    conn_arm(c, srv.rt->cfg.keepalive_timeout);
}

static void h1_flush(struct conn *c)
{
    struct exchange *x = c->x;
    int r = conn_send(c, &x->out);

    if (r < 0) {
        conn_close(c);
        return;
    }
    if (r == 0) {
        if (!c->writing) {
            c->writing = true;
            conn_watch(c, EV_WRITE);
        }
        conn_arm(c, x->rt->cfg.client_body_timeout);
        return;
    }
    if (c->writing) {
        c->writing = false;
        conn_watch(c, x->resp_done ? EV_READ : 0);
    }
    if (x->resp_done)
        h1_finish(c);
}

static void h1_output(struct exchange *x)
{
    struct conn *c = x->c;

    c->state = H1_BUSY;         /* an answer before the request was read whole: an error */
    h1_flush(c);
}

static void h1_writable(struct conn *c)
{
    if (c->x)
        h1_flush(c);
}

static void h1_head_begin(struct exchange *x, struct headw *w, int status, const char *reason, size_t reason_len)
{
    hw_put(w, "HTTP/1.1 ", 9);
    hw_u64(w, (uint64_t)status);
    hw_char(w, ' ');
    hw_put(w, reason, reason_len);
    hw_put(w, "\r\n", 2);
}

/* Framing of a body without a length: chunks for HTTP/1.1, the close for
 * HTTP/1.0; then Connection as keep-alive says, and the blank line. */
static void h1_head_end(struct exchange *x, struct headw *w, enum body_kind body)
{
    const char *conn;
    size_t len;

    if (body == BODY_UNKNOWN) {
        if (x->http10) {
            x->keep_alive = false;
        } else {
            x->chunk_out = true;
            hw_put(w, "Transfer-Encoding: chunked\r\n", 28);
        }
    }
    conn = as_http_connection_field(x->keep_alive, x->http10, &len);
    hw_put(w, conn, len);
    hw_put(w, "\r\n", 2);
}

static void h1_abort(struct exchange *x)
{
    conn_close(x->c);
}

/* Headers are in: the exchange takes them, then 100-continue and the body
 * timeout. */
static bool on_head(struct conn *c)
{
    struct exchange *x = c->x;
    struct as_http_request *r = x->req;

    x->http10 = r->http_major == 1 && r->http_minor == 0;
    x->keep_alive = r->keep_alive && !srv.stopping;
    if (!exchange_head_done(x))
        return false;
    if (r->expect_continue) {
        /* Ahead of the response in the output; sent now if the socket
         * takes it, else with the response. */
        spool_append(&x->out, AS_HTTP_CONTINUE, sizeof AS_HTTP_CONTINUE - 1);
        if (c->tp->send(c, &x->out) < 0 && errno != EAGAIN)
            as_debug("100-continue to %s: %s", c->peer, strerror(errno));
    }
    c->state = H1_BODY;
    conn_arm(c, x->rt->cfg.client_body_timeout);
    return true;
}

static void dispatch(struct conn *c)
{
    /* The read watcher stays: stopping and restarting it costs two
     * epoll_ctl per request. h1_readable stops it if the client sends
     * while we answer. */
    ev_timer_stop(srv.loop, &c->timer);
    c->state = H1_BUSY;
    exchange_dispatch(c->x);
}

/* Feeds buffered bytes to the parser until a request is complete, more
 * bytes are needed, or an error is answered. */
static void h1_parse(struct conn *c)
{
    struct block *in = c->in;
    struct as_http_request *r = c->x->req;
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
            exchange_error(c->x, r->status ? r->status : 400, true);
            return;
        }
    }
    if (in->start == in->end)
        in->start = in->end = 0;
}

/* A plain listen with "http2": a client that opens with the HTTP/2
 * preface (prior knowledge, h2c) gets HTTP/2. True when it did, or when
 * its first bytes may still be one. */
static bool h2c_preface(struct conn *c)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t have = c->in->end - c->in->start, n = have < sizeof preface - 1 ? have : sizeof preface - 1;

    if (!(c->lflags & AS_LISTEN_HTTP2) || c->tp->secure || !srv.rt->cfg.http2
        || memcmp(c->in->data + c->in->start, preface, n))
        return false;
    if (have < sizeof preface - 1)
        return true;            /* the rest of it is on its way */
    c->proto = &protocol_h2;
    c->proto->start(c);
    return true;
}

/* The first byte of a request: its exchange and the header timeout. */
static void begin_request(struct conn *c)
{
    c->fresh = false;
    if (!c->x)
        c->x = exchange_new(c);
    if (c->state == H1_IDLE) {
        c->state = H1_HEAD;
        conn_arm(c, c->x->rt->cfg.client_header_timeout);
    }
}

/* Raw bytes are drained whatever the transport: only the reset that unread
 * input would cause matters here (linger.h). */
static void linger_read(struct conn *c)
{
    char sink[4096];

    if (!as_linger_drain(c->fd, sink, sizeof sink, 64))
        conn_close(c);
}

static void h1_readable(struct conn *c)
{
    ssize_t n;

    if (c->state == H1_LINGER) {
        linger_read(c);
        return;
    }
    if (c->state == H1_BUSY) {
        if (!c->writing)
            conn_watch(c, 0);   /* pipelined input waits for the answer */
        return;
    }
    if (!c->in)
        c->in = block_get();
    if (c->in->start < c->in->end && c->state == H1_IDLE) {
        begin_request(c);       /* pipelined bytes from the previous request */
        h1_parse(c);
        return;
    }
    if (c->in->end == BLOCK_SIZE && c->in->start > 0) {
        memmove(c->in->data, c->in->data + c->in->start, c->in->end - c->in->start);
        c->in->end -= c->in->start;
        c->in->start = 0;
    }
    n = c->tp->recv(c, c->in->data + c->in->end, BLOCK_SIZE - c->in->end);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);          /* the client went away */
        return;
    }
    c->in->end += (size_t)n;
    PM_ADD(bytes_in, (uint64_t)n);
    if (c->fresh && h2c_preface(c))
        return;
    begin_request(c);
    if (c->state == H1_BODY)
        conn_arm(c, c->x->rt->cfg.client_body_timeout);
    h1_parse(c);
}

static void h1_timeout(struct conn *c)
{
    if ((c->state == H1_HEAD || c->state == H1_BODY) && c->x) {
        exchange_error(c->x, 408, true);
        return;
    }
    conn_close(c);
}

/* TERM: every connection closes after its next response. One between
 * requests gets a moment first: its client may be sending a request right
 * now, and closing under it would lose that request. */
static void h1_stop(struct conn *c)
{
    if (c->x)
        c->x->keep_alive = false;
    if (c->state == H1_IDLE)
        conn_arm(c, STOP_IDLE_GRACE);
}

static void h1_close(struct conn *c)
{
    struct exchange *x = c->x;

    if (x) {
        c->x = NULL;
        exchange_finish(x, false);
    }
    block_put(c->in);
    c->in = NULL;
}

const struct protocol protocol_h1 = {
    .name = "http/1.1",
    .start = h1_start,
    .readable = h1_readable,
    .writable = h1_writable,
    .timeout = h1_timeout,
    .head_begin = h1_head_begin,
    .head_end = h1_head_end,
    .output = h1_output,
    .abort = h1_abort,
    .stop = h1_stop,
    .close = h1_close,
};
