/* Tunnels after 101 Switching Protocols (see tunnel.h). Each direction is
 * a spool: bytes read from one side are queued for the other and sent as
 * it takes them; while TUNNEL_HIGH bytes wait for the client, the upstream
 * is not read, so a slow reader holds at most that much and stalls only
 * its own tunnel. The other way, an HTTP/1.1 client is not read while
 * TUNNEL_HIGH bytes wait for the upstream; an HTTP/2 client may send what
 * its stream's flow-control window allows, and the window opens again only
 * as the upstream takes the bytes.
 *
 * Ends: an HTTP/1.1 tunnel is its connection, which closes when either
 * side has ended (after what it sent is delivered) or on the idle timeout.
 * On HTTP/2, as for CONNECT (RFC 9113 8.5): the client's END_STREAM is a
 * FIN to the upstream, the upstream's FIN an END_STREAM to the client
 * (then the client's half is reset with NO_ERROR, as after any complete
 * response: its server is gone), an upstream error a CONNECT_ERROR reset,
 * and the client's reset closes the upstream connection. */
#include "tunnel.h"
#include "upstream.h"
#include "site.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "http_fields.h"

#define TUNNEL_HIGH (64u << 10)
#define TUNNEL_READ 16384
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"     /* RFC 6455 1.3 */

struct tunnel {
    struct exchange *x;
    struct upconn *u;           /* once open */
    struct spool up;            /* client -> upstream */
    ev_timer idle;              /* armed once; checks last when it fires */
    ev_tstamp last;             /* the last time bytes moved or a side changed */
    double timeout;             /* the site's read_timeout; 0: none */
    char key[25];               /* HTTP/2: the Sec-WebSocket-Key the proxy sent */
    bool open;                  /* the upstream said 101 */
    bool client_eof, up_eof;
    bool up_shut;               /* HTTP/2: the client's END_STREAM passed on as a FIN */
    bool up_gone;               /* HTTP/2: the upstream ended and stopped reading */
    bool ended;                 /* HTTP/2: the stream's reset is on its way */
};

static long n_tunnels;

long tunnel_count(void)
{
    return n_tunnels;
}

static bool wants_upgrade(const struct exchange *x)
{
    const struct as_http_request *r = x->req;

    /* HTTP/2 has no Upgrade: h2.c gives one to its WebSocket requests */
    return r->upgrade && (x->h2 ? x->h2_ws : !x->http10) && as_http_header(r, "Upgrade");
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents);

bool tunnel_admit(struct exchange *x)
{
    struct tunnel *t;
    unsigned char raw[16];

    if (!wants_upgrade(x))
        return true;
    if (n_tunnels >= x->rt->cfg.max_tunnels) {
        as_warn("upgrade from %s refused: max_tunnels (%ld) reached", x->c->peer, x->rt->cfg.max_tunnels);
        exchange_error(x, 503, true);
        return false;
    }
    if (!(t = calloc(1, sizeof *t)) || (x->h2 && RAND_bytes(raw, sizeof raw) != 1)) {
        as_err("upgrade from %s: out of memory or randomness", x->c->peer);
        free(t);
        exchange_error(x, 503, true);
        return false;
    }
    if (x->h2)
        EVP_EncodeBlock((unsigned char *)t->key, raw, sizeof raw);
    t->x = x;
    spool_init(&t->up, SIZE_MAX, false);    /* bounded by TUNNEL_HIGH, or the HTTP/2 window */
    ev_init(&t->idle, idle_cb);
    x->tunnel = t;
    n_tunnels++;
    return true;
}

void tunnel_request_fields(const struct exchange *x, struct headw *h)
{
    const struct as_http_header *up = as_http_header(x->req, "Upgrade");

    if (!x->tunnel || !up)
        return;
    hw_header(h, "Upgrade", 7, up->value, up->value_len);
    hw_put(h, "Connection: upgrade\r\n", 21);
    if (x->h2)
        hw_header(h, "Sec-WebSocket-Key", 17, x->tunnel->key, 24);
}

bool tunnel_answer_ok(const struct exchange *x, int status)
{
    return !(x->tunnel && x->h2 && status >= 200 && status < 300);
}

/* The value of the upstream head's field NAME, or NULL. */
static const char *field(const struct upconn *u, const char *name, size_t nl, size_t *vl)
{
    for (int i = 0; i < u->n_hdr; i++) {
        if (u->hdr[i].nl == nl && !strncasecmp(u->head + u->hdr[i].no, name, nl)) {
            *vl = u->hdr[i].vl;
            return u->head + u->hdr[i].vo;
        }
    }
    return NULL;
}

/* The upstream's 101 accepted our key (RFC 6455 4.2.2): the base64 of the
 * SHA-1 of the key and the protocol's GUID. */
static bool accept_ok(const struct tunnel *t, const struct upconn *u)
{
    unsigned char in[24 + sizeof WS_GUID - 1], md[EVP_MAX_MD_SIZE];
    char want[32];
    unsigned int mdlen = 0;
    size_t vl = 0;
    const char *v = field(u, "Sec-WebSocket-Accept", 20, &vl);

    memcpy(in, t->key, 24);
    memcpy(in + 24, WS_GUID, sizeof WS_GUID - 1);
    if (!v || !EVP_Digest(in, sizeof in, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return false;
    EVP_EncodeBlock((unsigned char *)want, md, 20);
    return vl == 28 && !memcmp(v, want, 28);
}

/* The end. HTTP/1.1: the client connection closes, and the exchange with
 * it (tunnel_close). HTTP/2: the stream is reset with CODE, and the
 * exchange ends when the reset is sent. The last thing its caller does
 * with T. */
static void end(struct tunnel *t, uint32_t code)
{
    struct exchange *x = t->x;

    if (!x->h2) {
        conn_close(x->c);
        return;
    }
    if (t->ended)
        return;
    t->ended = true;
    if (t->u)
        ev_io_stop(srv.loop, &t->u->io);
    ev_timer_stop(srv.loop, &t->idle);
    h2_reset(x, code);
}

/* Client -> upstream: what waits goes out. On HTTP/2 the client gets the
 * window back for what the upstream took, and its END_STREAM becomes a FIN
 * once everything before it is delivered. False when the tunnel ended. */
static bool to_upstream(struct tunnel *t)
{
    struct exchange *x = t->x;
    uint64_t sent = t->up.sent;
    int r, err;

    if (!t->up_gone && spool_pending(&t->up)) {
        r = spool_send(&t->up, t->u->fd);
        err = errno;
        if (x->h2 && t->up.sent > sent)
            h2_consumed(x, (size_t)(t->up.sent - sent));
        if (r < 0) {
            as_debug("tunnel to upstream %s: %s", t->u->u->name, strerror(err));
            if (!x->h2 || !t->up_eof) {
                end(t, NGHTTP2_CONNECT_ERROR);
                return false;
            }
            /* it ended its side and reads no more: what it sent still
             * goes to the client, what the client sends is dropped */
            t->up_gone = true;
            h2_consumed(x, (size_t)spool_pending(&t->up));
            spool_free(&t->up);
        }
    }
    if (x->h2 && t->client_eof && !t->up_shut && !t->up_gone && !spool_pending(&t->up)) {
        t->up_shut = true;
        if (shutdown(t->u->fd, SHUT_WR) < 0)
            as_debug("tunnel to upstream %s: shutdown: %s", t->u->u->name, strerror(errno));
    }
    return true;
}

/* Watches what each side can do now: the upstream is read while the
 * client has room and written while bytes wait for it; an HTTP/1.1 client
 * likewise. In the steady state (both sides read, nothing waits) the
 * watches are already so and nothing changes. The idle timeout starts
 * again: a stamp, which the timer reads when it fires (not a timer
 * re-armed for every message). */
static void rewatch(struct tunnel *t)
{
    struct exchange *x = t->x;
    struct conn *c = x->c;
    struct upconn *u = t->u;
    uint64_t down = spool_pending(&x->out), up = spool_pending(&t->up);
    int ue = 0;

    if (!t->up_eof && down < TUNNEL_HIGH)
        ue |= EV_READ;
    if (up && !t->up_gone)
        ue |= EV_WRITE;
    if (!ev_is_active(&u->io) || (u->io.events & (EV_READ | EV_WRITE)) != ue) {
        ev_io_stop(srv.loop, &u->io);
        if (ue) {
            ev_io_set(&u->io, u->fd, ue);
            ev_io_start(srv.loop, &u->io);
        }
    }
    if (!x->h2) {
        int ce = 0;
        if (!t->client_eof && up < TUNNEL_HIGH)
            ce |= EV_READ;
        if (down)
            ce |= EV_WRITE;
        conn_watch(c, ce);
        /* one side closed and everything it sent delivered: the end */
        if ((t->client_eof && !up) || (t->up_eof && !down)) {
            end(t, 0);
            return;
        }
    }
    t->last = ev_now(srv.loop);
}

/* Bytes read went straight out and nothing waited that way before or
 * after: no watch needs to change (the last rewatch set them for this
 * state), so only the idle stamp moves. The per-message path. */
static void passed(struct tunnel *t)
{
    t->last = ev_now(srv.loop);
}

/* Moves what can move now; the last thing its caller does with T. */
static void step(struct tunnel *t)
{
    struct exchange *x = t->x;
    struct conn *c = x->c;

    if (!to_upstream(t))
        return;
    if (x->h2) {
        rewatch(t);
        c->proto->output(x);        /* last: the stream may end in it */
        return;
    }
    if (spool_pending(&x->out) && conn_send(c, &x->out) < 0) {
        end(t, 0);
        return;
    }
    rewatch(t);
}

static void up_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct upconn *u = (struct upconn *)w;
    struct tunnel *t = u->x->tunnel;
    struct exchange *x = t->x;
    struct conn *c = x->c;

    if (revents & EV_READ) {
        char buf[TUNNEL_READ];
        ssize_t n = recv(u->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0 && x->h2) {
            as_debug("tunnel from upstream %s: %s", u->u->name, strerror(errno));
            end(t, NGHTTP2_CONNECT_ERROR);
            return;
        }
        if (n <= 0) {
            t->up_eof = true;
            x->resp_done = x->h2;       /* HTTP/2: END_STREAM after the rest */
        } else if (!x->h2) {
            /* straight to the client when nothing waits for it */
            bool was_idle = !spool_pending(&x->out);
            int r = conn_write(c, &x->out, buf, (size_t)n);
            if (r < 0) {
                end(t, 0);
                return;
            }
            if (r == 1 && was_idle && !(revents & EV_WRITE)) {
                passed(t);
                return;
            }
        } else if (spool_append(&x->out, buf, (size_t)n) < 0) {
            end(t, NGHTTP2_INTERNAL_ERROR);
            return;
        }
    }
    step(t);
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct tunnel *t = (struct tunnel *)((char *)w - offsetof(struct tunnel, idle));
    ev_tstamp left = t->last + t->timeout - ev_now(loop);

    if (left > 0) {             /* there was traffic since: wait the rest */
        ev_timer_set(w, left, 0.);
        ev_timer_start(loop, w);
        return;
    }

    as_debug("tunnel of %s idle for %gs: closed", t->x->c->peer, t->x->site->read_timeout);
    end(t, NGHTTP2_CANCEL);
}

/* ---- an HTTP/1.1 connection as the client side ---- */

static void client_readable(struct conn *c)
{
    struct tunnel *t = c->x->tunnel;
    char buf[TUNNEL_READ];
    ssize_t n = c->tp->recv(c, buf, sizeof buf);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        t->client_eof = true;
    else {
        /* straight to the upstream when nothing waits for it */
        bool was_idle = !spool_pending(&t->up);
        int r = spool_write(&t->up, t->u->fd, buf, (size_t)n);
        if (r < 0) {
            as_debug("tunnel to upstream %s: %s", t->u->u->name, strerror(errno));
            end(t, 0);
            return;
        }
        if (r == 1 && was_idle) {
            passed(t);
            return;
        }
    }
    step(t);
}

static void client_writable(struct conn *c)
{
    step(c->x->tunnel);
}

/* The tunnel's own timer runs instead of the connection's. */
static void client_timeout(struct conn *c)
{
    end(c->x->tunnel, 0);
}

static void client_stop(struct conn *c)
{
    end(c->x->tunnel, 0);       /* TERM: the application's clients reconnect elsewhere */
}

/* From conn_close: the exchange ends, completed (its log entry says how
 * long the tunnel lasted and what it carried). */
static void client_close(struct conn *c)
{
    struct exchange *x = c->x;

    c->x = NULL;
    block_put(c->in);
    c->in = NULL;
    exchange_finish(x, true);
}

static void no_head_begin(struct exchange *x, struct headw *w, int status, const char *reason, size_t reason_len)
{
}

static void no_head_end(struct exchange *x, struct headw *w, enum body_kind body)
{
}

static void no_output(struct exchange *x)
{
}

static void client_abort(struct exchange *x)
{
    end(x->tunnel, 0);
}

static const struct protocol protocol_tunnel = {
    .name = "tunnel",
    .readable = client_readable,
    .writable = client_writable,
    .timeout = client_timeout,
    .head_begin = no_head_begin,
    .head_end = no_head_end,
    .output = no_output,
    .abort = client_abort,
    .stop = client_stop,
    .close = client_close,
};

/* ---- an HTTP/2 stream as the client side ---- */

bool tunnel_client_data(struct exchange *x, const char *p, size_t n)
{
    struct tunnel *t = x->tunnel;

    if (t->ended || t->up_gone || t->client_eof || (x->head_sent && !t->open))
        return false;
    if (spool_append(&t->up, p, n) < 0) {
        end(t, NGHTTP2_INTERNAL_ERROR);
        return false;
    }
    if (t->open && to_upstream(t))
        rewatch(t);
    return true;
}

void tunnel_client_eof(struct exchange *x)
{
    struct tunnel *t = x->tunnel;

    t->client_eof = true;
    if (t->open && !t->ended && to_upstream(t))
        rewatch(t);
}

void tunnel_client_took(struct exchange *x)
{
    struct tunnel *t = x->tunnel;

    if (t->open && !t->ended)
        rewatch(t);
}

void tunnel_stop(struct exchange *x)
{
    if (x->tunnel && x->tunnel->open)
        end(x->tunnel, NGHTTP2_CANCEL);
}

/* ---- the opening ---- */

/* The client's head: for HTTP/1.1 the 101 with the upstream's fields but
 * the hop-by-hop ones, then its Upgrade and our Connection; for HTTP/2 a
 * 200 with the same fields but those HTTP/2 has no use for. */
static void open_head(struct exchange *x, struct upconn *u)
{
    const char *b = u->head;
    struct headw w;

    resp_head_begin(x, &w, x->h2 ? 200 : 101, b + u->st_off, u->st_len);
    for (int i = 0; i < u->n_hdr; i++) {
        const char *name = b + u->hdr[i].no;
        size_t nl = u->hdr[i].nl;
        if (as_http_hop_by_hop(name, nl) && (x->h2 || !(nl == 7 && !strncasecmp(name, "Upgrade", 7))))
            continue;
        if (x->h2 && nl == 20 && !strncasecmp(name, "Sec-WebSocket-Accept", 20))
            continue;
        hw_header(&w, name, nl, b + u->hdr[i].vo, u->hdr[i].vl);
    }
    if (x->h2) {
        resp_head_end(x, &w, BODY_UNKNOWN);
        return;
    }
    hw_put(&w, "Connection: upgrade\r\n\r\n", 23);
    hw_flush(&w);
}

void tunnel_start(struct upconn *u, const char *rest, size_t len)
{
    struct exchange *x = u->x;
    struct conn *c = x->c;
    struct tunnel *t = x->tunnel;

    if (!t || u->parser.status_code != 101) {
        as_warn("upstream %s: 101 to a request that asked for no upgrade", u->u->name);
        forward_fail(x, 502);
        return;
    }
    if (x->h2 && !accept_ok(t, u)) {
        as_warn("upstream %s: %s %.*s: 101 without the Sec-WebSocket-Accept of the proxy's key: 502", u->u->name,
                x->req->method, (int)x->req->target_len, x->req->target);
        forward_fail(x, 502);
        return;
    }
    t->u = u;
    t->open = true;
    x->keep_alive = false;
    open_head(x, u);
    /* never a temp file, which would grow with the traffic: rewatch bounds it */
    x->out.mem_limit = SIZE_MAX;
    if (len && spool_append(&x->out, rest, len) < 0) {
        end(t, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (!x->h2) {
        /* bytes the client sent after its request (h1's read buffer) */
        if (c->in && c->in->end > c->in->start)
            spool_append(&t->up, c->in->data + c->in->start, c->in->end - c->in->start);
        block_put(c->in);
        c->in = NULL;
        ev_timer_stop(srv.loop, &c->timer);
        c->proto = &protocol_tunnel;
    }
    /* From now on the upstream connection is the tunnel's. */
    ev_timer_stop(srv.loop, &u->timer);
    ev_set_cb(&u->io, up_cb);
    /* Messages go each way as they come, as the client's own socket does:
     * Nagle would hold a second small frame until the first is acked. */
    if (u->u->addr.sa.ss_family != AF_UNIX &&
        setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int)) < 0)
        as_debug("tunnel to upstream %s: TCP_NODELAY: %s", u->u->name, strerror(errno));
    t->timeout = x->site->read_timeout;
    t->last = ev_now(srv.loop);
    if (t->timeout > 0) {
        ev_timer_set(&t->idle, t->timeout, 0.);
        ev_timer_start(srv.loop, &t->idle);
    }
    as_debug("tunnel %s <-> %s open%s", c->peer, u->u->name, x->h2 ? " (HTTP/2 stream)" : "");
    step(t);
}

bool tunnel_opened(const struct exchange *x)
{
    return x->tunnel && x->tunnel->open;
}

void tunnel_end(struct exchange *x)
{
    struct tunnel *t = x->tunnel;

    if (!t)
        return;
    x->tunnel = NULL;
    n_tunnels--;
    ev_timer_stop(srv.loop, &t->idle);
    spool_free(&t->up);
    free(t);
}
