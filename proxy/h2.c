/* HTTP/2 on a client connection, with nghttp2 doing the framing, HPACK,
 * flow control and priorities. Each stream is an exchange of the
 * connection, like an HTTP/1.1 request: its head is written out as an
 * HTTP/1.1 head and fed to the shared parser, so both protocols judge a
 * request the same way and answer the same statuses (400, 413, 414, 431);
 * its body reaches the parser as DATA arrives (in chunked framing when the
 * client gave no content-length). Responses: the head lines the producers
 * write become the HEADERS frame, and x->out is the stream's DATA source.
 * A WebSocket by extended CONNECT (RFC 8441: :protocol websocket, which
 * SETTINGS_ENABLE_CONNECT_PROTOCOL allows) is a GET with Upgrade for the
 * parser and the upstream; once the upstream says 101, its stream is a
 * tunnel (tunnel.c). The proxy gives the client its flow-control window
 * back as it takes DATA (at once for request bodies, as the upstream takes
 * them for tunnels).
 *
 * Defences (each with a test in tests/test_proxy_h2_attacks.py):
 * at most H2_MAX_STREAMS concurrent streams (more are refused); client
 * stream resets limited by nghttp2's token bucket (rapid reset,
 * CVE-2023-44487), and CONTINUATION frames per header block limited
 * (CVE-2024-28182), both ending the connection with ENHANCE_YOUR_CALM;
 * decoded header bytes of a block capped (HPACK bombs, huge header lists:
 * 431 up to the cap, the connection ended beyond it); SETTINGS and PING
 * answers the client does not read ended by nghttp2's outbound ack limit;
 * no more frames taken from nghttp2 while H2_OUT_HIGH bytes wait for the
 * socket, and no reading while they wait (a slow reader holds little).
 * A session idle for H2_IDLE_TRIM gives its large blocks' pages back
 * (h2_mem.c): an idle connection weighs little more than an HTTP/1.1 one. */
#include "exchange.h"
#include "h2_mem.h"
#include "metrics.h"
#include "tunnel.h"
#include "xalloc.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define H2_MAX_STREAMS 128
#define H2_STREAM_WINDOW (1 << 20)          /* a client may send this much per stream unread */
#define H2_CONN_WINDOW (16 << 20)
#define H2_OUT_HIGH (64u << 10)             /* frames waiting for the socket */
#define H2_STREAM_MEM (64u << 10)           /* a stream's response in RAM before a temp file */
#define H2_HEADER_HARD (256u << 10)         /* decoded bytes of one header block: beyond, the end */
#define H2_RESET_BURST 1000                 /* nghttp2's own defaults for the reset bucket */
#define H2_RESET_RATE 33
#define H2_MAX_CONTINUATIONS 8
#define H2_IDLE_TRIM 1.0                    /* seconds idle before the session's pages go back */

struct h2 {
    nghttp2_session *s;
    struct h2_mem mem;          /* the session's allocator (h2_mem.c) */
    struct spool out;           /* frames for the socket */
    struct exchange *streams;   /* open streams, newest first */
    int n_streams;
    bool busy;                  /* inside nghttp2: no mem_send now */
    bool want_flush;
    bool writing;
    bool lean;                  /* idle, its pages given back (h2_trim) */
    double idle_since;
    /* the header block being received (one at a time, RFC 9113 6.10) */
    char *hb;                   /* "name: value\r\n" lines */
    size_t hb_len, hb_cap, hb_bytes;
    char *cookie;               /* cookie fields, joined by "; " */
    size_t cookie_len, cookie_cap;
    char *method, *path, *authority, *protocol;
    bool has_host;
};

static void append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (!n)
        return;
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 256;
        *buf = as_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

static void block_reset(struct h2 *h)
{
    h->hb_len = h->hb_bytes = h->cookie_len = 0;
    free(h->method);
    free(h->path);
    free(h->authority);
    free(h->protocol);
    h->method = h->path = h->authority = h->protocol = NULL;
    h->has_host = false;
}

static void h2_flush(struct conn *c);

static void unlink_stream(struct h2 *h, struct exchange *x)
{
    if (x->link_prev)
        x->link_prev->link_next = x->link_next;
    else
        h->streams = x->link_next;
    if (x->link_next)
        x->link_next->link_prev = x->link_prev;
    h->n_streams--;
}

/* ---- requests ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    struct h2 *h = c->h2;
    struct exchange *x;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;           /* trailers: read and dropped */
    x = exchange_new(c);
    h->lean = false;
    PM_INC(h2_streams);
    x->h2 = true;
    x->keep_alive = true;
    x->stream_id = f->hd.stream_id;
    x->out.mem_limit = H2_STREAM_MEM;
    x->h2_chunked = x->h2_deferred = x->h2_answered = x->h2_ws = false;
    x->h2_held = 0;
    x->link_prev = NULL;
    x->link_next = h->streams;
    if (h->streams)
        h->streams->link_prev = x;
    h->streams = x;
    h->n_streams++;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, x);
    block_reset(h);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct conn *c = ud;
    struct h2 *h = c->h2;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h->hb_bytes += nl + vl + 32;        /* RFC 9113's measure of a field list */
    if (h->hb_bytes > H2_HEADER_HARD) {
        as_debug("HTTP/2 from %s: header block over %u bytes", c->peer, H2_HEADER_HARD);
        nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (name[0] == ':') {
        char **slot = nl == 7 && !memcmp(name, ":method", 7) ? &h->method
                      : nl == 5 && !memcmp(name, ":path", 5) ? &h->path
                      : nl == 10 && !memcmp(name, ":authority", 10) ? &h->authority
                      : nl == 9 && !memcmp(name, ":protocol", 9) ? &h->protocol : NULL;
        if (slot && !*slot)
            *slot = strndup((const char *)value, vl);
        return 0;
    }
    if (nl == 6 && !memcmp(name, "cookie", 6)) {
        if (h->cookie_len)
            append(&h->cookie, &h->cookie_len, &h->cookie_cap, "; ", 2);
        append(&h->cookie, &h->cookie_len, &h->cookie_cap, value, vl);
        return 0;
    }
    if (nl == 4 && !memcmp(name, "host", 4)) {
        if (h->authority)
            return 0;       /* :authority wins (RFC 9113 8.3.1) */
        h->has_host = true;
    }
    if (h->protocol && nl == 17 && !memcmp(name, "sec-websocket-key", 17))
        return 0;           /* not used over HTTP/2 (RFC 8441 5): the proxy sends its own */
    append(&h->hb, &h->hb_len, &h->hb_cap, name, nl);
    append(&h->hb, &h->hb_len, &h->hb_cap, ": ", 2);
    append(&h->hb, &h->hb_len, &h->hb_cap, value, vl);
    append(&h->hb, &h->hb_len, &h->hb_cap, "\r\n", 2);
    return 0;
}

/* Bytes for the stream's parser; a verdict other than "more" ends the
 * request: dispatched when complete, answered when refused. */
static void feed(struct exchange *x, const char *p, size_t n)
{
    struct as_http_request *r = x->req;

    if (x->h2_answered)
        return;
    as_http_feed(r, p, n);
    if (r->state == AS_HTTP_ERROR) {
        as_debug("bad request from %s (HTTP/2): %s", x->c->peer, r->error ? r->error : "?");
        x->h2_answered = true;
        exchange_error(x, r->status ? r->status : 400, false);
    }
}

static void request_end(struct exchange *x)
{
    if (x->h2_answered)
        return;
    if (x->h2_chunked)
        feed(x, "0\r\n\r\n", 5);
    if (x->h2_answered)
        return;
    x->h2_answered = true;
    if (x->req->state != AS_HTTP_DONE) {
        exchange_error(x, 400, false);      /* a body shorter than its content-length */
        return;
    }
    exchange_dispatch(x);
}

/* The header block is complete: it becomes an HTTP/1.1 head for the
 * parser, with :authority as Host and the cookies joined. */
static void request_head(struct conn *c, struct exchange *x, bool end_stream)
{
    struct h2 *h = c->h2;
    struct as_http_request *r = x->req;
    char *head = NULL;
    const char *method = h->method;
    size_t len = 0, cap = 0;

    if (!h->method || !h->path) {
        block_reset(h);
        x->h2_answered = true;
        exchange_error(x, 400, false);
        return;
    }
    /* nghttp2 lets :protocol through only with CONNECT, :scheme, :path and
     * :authority (RFC 8441 4); a protocol other than websocket stays a
     * CONNECT, which the parser refuses as over HTTP/1.1 (501). A
     * WebSocket whose client ended its side at once is no tunnel. */
    if (h->protocol && !strcasecmp(h->protocol, "websocket")) {
        x->h2_ws = true;
        method = "GET";
        if (end_stream) {
            block_reset(h);
            x->h2_answered = true;
            exchange_error(x, 400, false);
            return;
        }
    }
    append(&head, &len, &cap, method, strlen(method));
    append(&head, &len, &cap, " ", 1);
    append(&head, &len, &cap, h->path, strlen(h->path));
    append(&head, &len, &cap, " HTTP/1.1\r\n", 11);
    if (h->authority) {
        append(&head, &len, &cap, "host: ", 6);
        append(&head, &len, &cap, h->authority, strlen(h->authority));
        append(&head, &len, &cap, "\r\n", 2);
    }
    append(&head, &len, &cap, h->hb, h->hb_len);
    if (h->cookie_len) {
        append(&head, &len, &cap, "cookie: ", 8);
        append(&head, &len, &cap, h->cookie, h->cookie_len);
        append(&head, &len, &cap, "\r\n", 2);
    }
    /* A body without content-length: chunked for the parser, which then
     * applies the same limits as to an HTTP/1.1 chunked body. A
     * WebSocket's DATA is no body but the tunnel's. */
    if (x->h2_ws) {
        static const char up[] = "upgrade: websocket\r\nconnection: upgrade\r\n";
        append(&head, &len, &cap, up, sizeof up - 1);
    } else if (!end_stream && !(h->hb_len && memmem(h->hb, h->hb_len, "content-length: ", 16))) {
        x->h2_chunked = true;
        append(&head, &len, &cap, "transfer-encoding: chunked\r\n", 28);
    }
    append(&head, &len, &cap, "\r\n", 2);
    block_reset(h);
    feed(x, head, len);
    free(head);
    if (x->h2_answered)
        return;
    if (r->state != AS_HTTP_HEAD_DONE) {
        x->h2_answered = true;
        exchange_error(x, 400, false);
        return;
    }
    if (!exchange_head_done(x)) {
        x->h2_answered = true;
        return;
    }
    if (r->expect_continue) {
        static const nghttp2_nv cont = { (uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE };
        nghttp2_submit_headers(h->s, NGHTTP2_FLAG_NONE, x->stream_id, NULL, &cont, 1, NULL);
    }
    as_http_begin_body(r);
    if (end_stream || x->h2_ws)
        request_end(x);
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    struct exchange *x = nghttp2_session_get_stream_user_data(s, id);
    char size[20];

    if (x && x->tunnel) {
        x->h2_held += len;
        if (!tunnel_client_data(x, (const char *)data, len))
            h2_consumed(x, len);
        return 0;
    }
    nghttp2_session_consume(s, id, len);       /* a body is spooled as it comes */
    if (!x || x->h2_answered)
        return 0;
    if (x->h2_chunked) {
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        feed(x, size, (size_t)n);
        feed(x, (const char *)data, len);
        feed(x, "\r\n", 2);
    } else {
        feed(x, (const char *)data, len);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    struct exchange *x;

    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        x = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (!x)
            return 0;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            request_head(c, x, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        else if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && x->tunnel)
            tunnel_client_eof(x);
        else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            request_end(x);         /* after trailers, which are dropped */
        return 0;
    case NGHTTP2_DATA:
        x = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (x && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            if (x->tunnel)
                tunnel_client_eof(x);
            else
                request_end(x);
        }
        return 0;
    }
    return 0;
}

/* The one end of a stream: its exchange ends, completed when the whole
 * response went out. */
static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *ud)
{
    struct conn *c = ud;
    struct exchange *x = nghttp2_session_get_stream_user_data(s, id);

    if (!x)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    unlink_stream(c->h2, x);
    if (x->h2_held)     /* the stream's window is gone, the connection's is not */
        nghttp2_session_consume_connection(s, x->h2_held);
    exchange_finish(x, error == NGHTTP2_NO_ERROR && x->resp_done && x->out.total == x->out.sent);
    return 0;
}

/* A WebSocket's response is complete (its tunnel's upstream ended, or it
 * was refused) and the client still has its half open: that half ends
 * too (RFC 9113 8.1 allows NO_ERROR after a complete response), as an
 * HTTP/1.1 tunnel closes when either side has. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct exchange *x;

    if (f->hd.type != NGHTTP2_DATA || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    x = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (x && x->h2_ws && !nghttp2_session_get_stream_remote_close(s, f->hd.stream_id))
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

void h2_consumed(struct exchange *x, size_t n)
{
    x->h2_held -= n;
    nghttp2_session_consume(x->c->h2->s, x->stream_id, n);
}

/* ---- responses ---- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    struct exchange *x = src->ptr;
    ssize_t n = spool_gather(&x->out, (char *)buf, len);

    if (n < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;     /* the file broke: reset the stream */
    spool_advance(&x->out, (size_t)n);
    if (x->tunnel && n)
        tunnel_client_took(x);
    if (x->resp_done && x->out.sent == x->out.total) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return n;
    }
    if (n == 0) {
        x->h2_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return n;
}

/* HTTP/2 has no status line and no reason phrase: x->status becomes
 * :status in h2_head_end. */
static void h2_head_begin(struct exchange *x, struct headw *w, int status, const char *reason, size_t reason_len)
{
}

static bool connection_specific(const char *name, size_t n)
{
    static const char *const drop[] = { "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                        "upgrade", NULL };

    for (const char *const *d = drop; *d; d++)
        if (strlen(*d) == n && !strncmp(*d, name, n))
            return true;
    return false;
}

/* The head lines in x->out become the HEADERS frame; x->out keeps the body. */
static void h2_head_end(struct exchange *x, struct headw *w, enum body_kind body)
{
    struct h2 *h = x->c->h2;
    nghttp2_data_provider prd = { .source.ptr = x, .read_callback = read_body };
    char status[3], *lines, *p, *end;
    nghttp2_nv *nv;
    size_t n = 1, len;

    hw_flush(w);
    len = (size_t)(x->out.total - x->out.sent);
    lines = as_xrealloc(NULL, len + 1);
    if (spool_gather(&x->out, lines, len) != (ssize_t)len)
        len = 0;
    spool_free(&x->out);
    for (p = lines, end = lines + len; p < end; p++)
        n += *p == '\n';
    nv = as_xrealloc(NULL, n * sizeof *nv);
    status[0] = (char)('0' + x->status / 100 % 10);     /* statuses are three digits */
    status[1] = (char)('0' + x->status / 10 % 10);
    status[2] = (char)('0' + x->status % 10);
    nv[0] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE };
    n = 1;
    for (p = lines; p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v;
        size_t nl, vl;
        if (!eol)
            break;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            nl = (size_t)(colon - p);
            for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
                ;
            vl = (size_t)(eol - v);
            if (vl && v[vl - 1] == '\r')
                vl--;
            for (char *q = p; q < colon; q++)
                *q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);     /* HTTP/2 names are lower case */
            if (nl && !connection_specific(p, nl))
                nv[n++] = (nghttp2_nv){ (uint8_t *)p, (uint8_t *)v, nl, vl, NGHTTP2_NV_FLAG_NONE };
        }
        p = eol + 1;
    }
    if (nghttp2_submit_response(h->s, x->stream_id, nv, n, body == BODY_NONE || x->head_only ? NULL : &prd))
        as_debug("HTTP/2 response on stream %d: refused", x->stream_id);
    free(nv);
    free(lines);
}

static void h2_output(struct exchange *x)
{
    struct h2 *h = x->c->h2;

    if (x->h2_deferred) {
        x->h2_deferred = false;
        nghttp2_session_resume_data(h->s, x->stream_id);
    }
    h2_flush(x->c);
}

void h2_reset(struct exchange *x, uint32_t code)
{
    nghttp2_submit_rst_stream(x->c->h2->s, NGHTTP2_FLAG_NONE, x->stream_id, code);
    h2_flush(x->c);
}

static void h2_abort(struct exchange *x)
{
    h2_reset(x, NGHTTP2_INTERNAL_ERROR);
}

/* ---- the connection ---- */

/* Frames from nghttp2 to the socket while few wait; then what the
 * protocol watches and which timer runs. */
static void h2_flush(struct conn *c)
{
    struct h2 *h = c->h2;
    int r;

    if (h->busy) {
        h->want_flush = true;
        return;
    }
    h->want_flush = false;
    for (;;) {
        while (h->out.total - h->out.sent < H2_OUT_HIGH) {
            const uint8_t *p;
            ssize_t n;
            h->busy = true;
            n = nghttp2_session_mem_send(h->s, &p);
            h->busy = false;
            if (n < 0) {
                as_debug("HTTP/2 to %s: %s", c->peer, nghttp2_strerror((int)n));
                conn_close(c);
                return;
            }
            if (n == 0)
                break;
            h->lean = false;
            spool_append(&h->out, p, (size_t)n);
        }
        r = conn_send(c, &h->out);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0) {
            /* The client does not read: no more requests from it until it
             * does, and the send timeout runs. */
            h->writing = true;
            conn_watch(c, EV_WRITE);
            conn_arm(c, srv.rt->cfg.client_body_timeout);
            return;
        }
        if (!nghttp2_session_want_write(h->s))
            break;
    }
    spool_free(&h->out);
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)) {
        conn_close(c);              /* GOAWAY sent and every stream done */
        return;
    }
    h->writing = false;
    conn_watch(c, EV_READ);
    if (h->n_streams)
        conn_arm(c, srv.rt->cfg.client_body_timeout);
    else if (!h->lean && srv.rt->cfg.keepalive_timeout > H2_IDLE_TRIM) {
        h->idle_since = ev_now(srv.loop);
        conn_arm(c, H2_IDLE_TRIM);          /* then h2_trim */
    } else
        conn_arm(c, srv.rt->cfg.keepalive_timeout);
}

/* The session stayed idle: what it holds only to send or to receive a
 * header block goes (the header block buffers, the frame buffer's
 * pages), and it weighs little more than an HTTP/1.1 connection until it
 * is used again. */
static void h2_trim(struct h2 *h)
{
    free(h->hb);
    free(h->cookie);
    h->hb = h->cookie = NULL;
    h->hb_len = h->hb_cap = h->hb_bytes = h->cookie_len = h->cookie_cap = 0;
    h2_mem_idle(&h->mem);
    h->lean = true;
}

/* The end after a protocol error or a timeout: what nghttp2 has to say
 * (its GOAWAY) goes out if the socket takes it now, then the close. */
static void send_then_close(struct conn *c)
{
    struct h2 *h = c->h2;
    const uint8_t *p;
    ssize_t n;

    while (h->out.total - h->out.sent < H2_OUT_HIGH && (n = nghttp2_session_mem_send(h->s, &p)) > 0)
        spool_append(&h->out, p, (size_t)n);
    c->tp->send(c, &h->out);
    conn_close(c);
}

static bool recv_bytes(struct conn *c, const char *p, size_t n)
{
    struct h2 *h = c->h2;
    ssize_t r;

    h->busy = true;
    r = nghttp2_session_mem_recv(h->s, (const uint8_t *)p, n);
    h->busy = false;
    if (r < 0) {
        as_debug("HTTP/2 from %s: %s", c->peer, nghttp2_strerror((int)r));
        send_then_close(c);
        return false;
    }
    return true;
}

static void h2_readable(struct conn *c)
{
    char buf[16384];
    ssize_t n;

    if (c->h2->writing)
        return;
    n = c->tp->recv(c, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
    PM_ADD(bytes_in, (uint64_t)n);
    if (recv_bytes(c, buf, (size_t)n))
        h2_flush(c);
}

static void h2_writable(struct conn *c)
{
    h2_flush(c);
}

/* Idle: the connection ends. Streams still reading their request get 408
 * (a client that opens streams and stalls holds nothing for long); the
 * others wait for their upstream, which has its own timeouts. */
static void h2_timeout(struct conn *c)
{
    struct h2 *h = c->h2;

    /* h2_mem_idle's condition: no stream, nothing for nghttp2 to send. */
    if (!h->n_streams && !h->writing && !h->lean && !nghttp2_session_want_write(h->s)) {
        double left = srv.rt->cfg.keepalive_timeout - (ev_now(srv.loop) - h->idle_since);
        h2_trim(h);
        if (left > 0) {
            conn_arm(c, left);
            return;
        }
    }
    if (!h->n_streams || h->writing) {
        nghttp2_session_terminate_session(h->s, NGHTTP2_NO_ERROR);
        send_then_close(c);
        return;
    }
    for (struct exchange *x = h->streams, *next; x; x = next) {
        next = x->link_next;
        if (!x->h2_answered) {
            x->h2_answered = true;
            exchange_error(x, 408, false);
        }
    }
    h2_flush(c);
}

static void h2_stop(struct conn *c)
{
    struct h2 *h = c->h2;

    /* Tunnels end now, as over HTTP/1.1; their resets go out with the
     * GOAWAY in one flush (busy defers each reset's own), which ends
     * their streams: none ends while the list is walked. */
    h->busy = true;
    for (struct exchange *x = h->streams; x; x = x->link_next)
        tunnel_stop(x);
    h->busy = false;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_flush(c);
}

static void h2_close(struct conn *c)
{
    struct h2 *h = c->h2;

    if (!h)
        return;
    c->h2 = NULL;
    while (h->streams) {
        struct exchange *x = h->streams;
        nghttp2_session_set_stream_user_data(h->s, x->stream_id, NULL);
        unlink_stream(h, x);
        exchange_finish(x, false);
    }
    nghttp2_session_del(h->s);
    h2_mem_release(&h->mem);
    spool_free(&h->out);
    block_reset(h);
    free(h->hb);
    free(h->cookie);
    free(h);
}

static nghttp2_session_callbacks *callbacks(void)
{
    static nghttp2_session_callbacks *cb;

    if (!cb) {
        if (nghttp2_session_callbacks_new(&cb))
            as_out_of_memory();
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    }
    return cb;
}

static nghttp2_option *options(void)
{
    static nghttp2_option *opt;

    if (!opt) {
        if (nghttp2_option_new(&opt))
            as_out_of_memory();
        nghttp2_option_set_stream_reset_rate_limit(opt, H2_RESET_BURST, H2_RESET_RATE);
        nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
        nghttp2_option_set_max_outbound_ack(opt, 1000);
        nghttp2_option_set_max_settings(opt, 32);
        nghttp2_option_set_no_auto_window_update(opt, 1);     /* h2_consumed, on_data */
        /* A server's nghttp2 keeps up to MAX_CONCURRENT_STREAMS closed
         * streams for RFC 7540's dependency tree (which RFC 9113
         * deprecates): an idle connection after a page of 100 requests
         * would hold them all. A new stream that names a closed one as its
         * parent gets the default priority instead. */
        nghttp2_option_set_no_closed_streams(opt, 1);
    }
    return opt;
}

/* The connection speaks HTTP/2 from now on (ALPN h2, or an h2c preface:
 * bytes HTTP/1.1 read already are in c->in). */
static void h2_start(struct conn *c)
{
    static const nghttp2_settings_entry settings[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW },
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },   /* WebSockets, RFC 8441 */
    };
    struct h2 *h = calloc(1, sizeof *h);
    nghttp2_mem mem;
    int r = -1;

    if (h) {
        mem = h2_mem_of(&h->mem);
        h2_mem_creating(&h->mem, true);
        r = nghttp2_session_server_new3(&h->s, callbacks(), c, options(), &mem);
        h2_mem_creating(&h->mem, false);
    }
    if (r) {
        as_err("HTTP/2: out of memory for a session");
        if (h)
            h2_mem_release(&h->mem);
        free(h);
        conn_close(c);
        return;
    }
    c->h2 = h;
    spool_init(&h->out, SIZE_MAX, false);
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, settings, sizeof settings / sizeof *settings);
    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    conn_watch(c, EV_READ);
    if (c->in) {
        struct block *in = c->in;
        c->in = NULL;
        if (!recv_bytes(c, in->data + in->start, in->end - in->start)) {
            block_put(in);
            return;
        }
        block_put(in);
    }
    h2_flush(c);
}

const struct protocol protocol_h2 = {
    .name = "h2",
    .start = h2_start,
    .readable = h2_readable,
    .writable = h2_writable,
    .timeout = h2_timeout,
    .head_begin = h2_head_begin,
    .head_end = h2_head_end,
    .output = h2_output,
    .abort = h2_abort,
    .stop = h2_stop,
    .close = h2_close,
};
