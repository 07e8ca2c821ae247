/* Tunnels after 101 Switching Protocols (see tunnel.h). Each direction is
 * a spool: bytes read from one side are queued for the other and sent as
 * it takes them; while TUNNEL_HIGH bytes wait for one side, the other is
 * not read, so a slow reader holds at most that much and stalls only its
 * own tunnel. */
#include "tunnel.h"
#include "upstream.h"
#include "site.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http_fields.h"

#define TUNNEL_HIGH (64u << 10)
#define TUNNEL_READ 16384

struct tunnel {
    struct exchange *x;
    struct upconn *u;
    struct spool up;            /* client -> upstream */
    bool client_eof, up_eof;
    bool up_writing;
};

static long n_tunnels;

long tunnel_count(void)
{
    return n_tunnels;
}

static bool wants_upgrade(const struct exchange *x)
{
    const struct as_http_request *r = x->req;

    return r->upgrade && !x->h2 && !x->http10 && as_http_header(r, "Upgrade");
}

bool tunnel_admit(struct exchange *x)
{
    if (!wants_upgrade(x))
        return true;
    if (n_tunnels >= x->rt->cfg.max_tunnels) {
        as_warn("upgrade from %s refused: max_tunnels (%ld) reached", x->c->peer, x->rt->cfg.max_tunnels);
        exchange_error(x, 503, true);
        return false;
    }
    x->upgrade = true;
    n_tunnels++;
    return true;
}

void tunnel_request_fields(const struct exchange *x, struct headw *h)
{
    const struct as_http_header *up = as_http_header(x->req, "Upgrade");

    if (!x->upgrade || !up)
        return;
    hw_header(h, "Upgrade", 7, up->value, up->value_len);
    hw_put(h, "Connection: upgrade\r\n", 21);
}

static void tunnel_close(struct conn *c);

/* The end of the tunnel is the end of its client connection. */
static void end(struct tunnel *t)
{
    conn_close(t->x->c);
}

/* Watches what each side can do now: a side is read while the other has
 * room, and written while bytes wait for it. */
static void rewatch(struct tunnel *t)
{
    struct conn *c = t->x->c;
    uint64_t down = spool_pending(&t->x->out), up = spool_pending(&t->up);
    int ce = 0, ue = 0;

    if (!t->client_eof && up < TUNNEL_HIGH)
        ce |= EV_READ;
    if (down)
        ce |= EV_WRITE;
    if (!t->up_eof && down < TUNNEL_HIGH)
        ue |= EV_READ;
    if (up)
        ue |= EV_WRITE;
    conn_watch(c, ce);
    if (!ev_is_active(&t->u->io) || (t->u->io.events & (EV_READ | EV_WRITE)) != ue) {
        ev_io_stop(srv.loop, &t->u->io);
        if (ue) {
            ev_io_set(&t->u->io, t->u->fd, ue);
            ev_io_start(srv.loop, &t->u->io);
        }
    }
    /* one side closed and everything it sent delivered: the end */
    if ((t->client_eof && !up) || (t->up_eof && !down)) {
        end(t);
        return;
    }
    conn_arm(c, t->x->site->read_timeout);
}

/* Sends what waits for each side. False when the tunnel ended. */
static bool flush(struct tunnel *t)
{
    struct conn *c = t->x->c;

    if (spool_pending(&t->x->out) && c->tp->send(c, &t->x->out) < 0) {
        if (errno != EPIPE && errno != ECONNRESET)
            as_debug("tunnel to %s: %s", c->peer, strerror(errno));
        end(t);
        return false;
    }
    if (spool_pending(&t->up) && spool_send(&t->up, t->u->fd) < 0) {
        as_debug("tunnel to upstream %s: %s", t->u->u->name, strerror(errno));
        end(t);
        return false;
    }
    return true;
}

static void step(struct tunnel *t)
{
    if (flush(t))
        rewatch(t);
}

static void client_readable(struct conn *c)
{
    struct tunnel *t = c->x->tunnel;
    char buf[TUNNEL_READ];
    ssize_t n = c->tp->recv(c, buf, sizeof buf);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        t->client_eof = true;
    else if (spool_append(&t->up, buf, (size_t)n) < 0) {
        end(t);
        return;
    }
    step(t);
}

static void client_writable(struct conn *c)
{
    step(c->x->tunnel);
}

static void up_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct upconn *u = (struct upconn *)w;
    struct tunnel *t = u->x->tunnel;

    if (revents & EV_READ) {
        char buf[TUNNEL_READ];
        ssize_t n = recv(u->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0)
            t->up_eof = true;
        else if (spool_append(&t->x->out, buf, (size_t)n) < 0) {
            end(t);
            return;
        }
    }
    step(t);
}

static void tunnel_timeout(struct conn *c)
{
    as_debug("tunnel of %s idle for %gs: closed", c->peer, c->x->site->read_timeout);
    end(c->x->tunnel);
}

static void tunnel_stop(struct conn *c)
{
    end(c->x->tunnel);      /* TERM: the application's clients reconnect elsewhere */
}

/* From conn_close: the exchange ends, completed (its log entry says how
 * long the tunnel lasted and what it carried). */
static void tunnel_close(struct conn *c)
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

static void tunnel_abort(struct exchange *x)
{
    end(x->tunnel);
}

static const struct protocol protocol_tunnel = {
    .name = "tunnel",
    .readable = client_readable,
    .writable = client_writable,
    .timeout = tunnel_timeout,
    .head_begin = no_head_begin,
    .head_end = no_head_end,
    .output = no_output,
    .abort = tunnel_abort,
    .stop = tunnel_stop,
    .close = tunnel_close,
};

/* The 101 head for the client: the upstream's fields without the
 * hop-by-hop ones, then its Upgrade and our Connection. */
static void head_101(struct exchange *x, struct upconn *u)
{
    const char *b = u->head;
    struct headw w;

    resp_head_begin(x, &w, 101, b + u->st_off, u->st_len);
    for (int i = 0; i < u->n_hdr; i++) {
        const char *name = b + u->hdr[i].no;
        size_t nl = u->hdr[i].nl;
        if (as_http_hop_by_hop(name, nl) && !(nl == 7 && !strncasecmp(name, "Upgrade", 7)))
            continue;
        hw_header(&w, name, nl, b + u->hdr[i].vo, u->hdr[i].vl);
    }
    hw_put(&w, "Connection: upgrade\r\n\r\n", 23);
    hw_flush(&w);
}

void tunnel_start(struct upconn *u, const char *rest, size_t len)
{
    struct exchange *x = u->x;
    struct conn *c = x->c;
    struct tunnel *t;

    if (!x->upgrade || u->parser.status_code != 101) {
        as_warn("upstream %s: 101 to a request that asked for no upgrade", u->u->name);
        forward_fail(x, 502);
        return;
    }
    if (!(t = calloc(1, sizeof *t))) {
        forward_fail(x, 502);
        return;
    }
    t->x = x;
    t->u = u;
    x->tunnel = t;
    x->keep_alive = false;
    spool_init(&t->up, SIZE_MAX, false);
    head_101(x, u);
    if (len && spool_append(&x->out, rest, len) < 0) {
        end(t);
        return;
    }
    /* bytes the client sent after its request (h1's read buffer) */
    if (c->in && c->in->end > c->in->start)
        spool_append(&t->up, c->in->data + c->in->start, c->in->end - c->in->start);
    block_put(c->in);
    c->in = NULL;
    /* From now on both sockets are the tunnel's. */
    ev_timer_stop(srv.loop, &u->timer);
    ev_set_cb(&u->io, up_cb);
    c->proto = &protocol_tunnel;
    as_debug("tunnel %s <-> %s open", c->peer, u->u->name);
    step(t);
}

void tunnel_end(struct exchange *x)
{
    if (!x->upgrade)
        return;
    x->upgrade = false;
    n_tunnels--;
    if (x->tunnel) {
        spool_free(&x->tunnel->up);
        free(x->tunnel);
        x->tunnel = NULL;
    }
}
