/* The PROXY protocol stage of a connection on a `listen = ADDR
 * proxy_protocol`: the header is read before anything else (before TLS),
 * without taking a byte of what follows it: each read peeks, and only
 * the bytes that belong to the header are taken from the socket. Bytes of
 * an unfinished header are taken too (all of them are the header's), so a
 * slow sender cannot make the loop spin on data it leaves unread. The
 * header's source replaces the connection's peer only when the sender is
 * one of real_ip_from; without the header the connection is closed
 * (client_header_timeout), as nginx does. */
#include "conn.h"
#include "exchange.h"
#include "proxy_proto.h"
#include "realip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct pp_stage {
    size_t len;
    unsigned char buf[PP_MAX];
};

static void pp_readable(struct conn *c)
{
    struct pp_stage *pp = c->pp;
    struct pp_addr a;
    ssize_t n = recv(c->fd, pp->buf + pp->len, sizeof pp->buf - pp->len, MSG_PEEK);
    int r;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    r = pp_parse(pp->buf, pp->len + (size_t)n, &a);
    if (r < 0 || (r == 0 && pp->len + (size_t)n == sizeof pp->buf)) {
        as_debug("connection from %s: no valid PROXY protocol header", c->peer);
        conn_close(c);
        return;
    }
    /* take the header's bytes, and no more */
    size_t take = r ? (size_t)r - pp->len : (size_t)n;
    char sink[PP_MAX];
    if (recv(c->fd, sink, take, 0) != (ssize_t)take) {
        conn_close(c);
        return;
    }
    if (r == 0) {
        pp->len += take;
        return;
    }
    free(c->pp);
    c->pp = NULL;
    if (a.family != AF_UNSPEC && realip_front(c)) {
        inet_ntop(a.family, a.src, c->peer, sizeof c->peer);
        c->peer_port = a.src_port;
    } else if (a.family != AF_UNSPEC) {
        as_debug("PROXY header from %s, not one of real_ip_from: ignored", c->peer);
    }
    conn_watch(c, 0);
    conn_begin(c);
}

static void pp_timeout(struct conn *c)
{
    conn_close(c);
}

static void pp_close(struct conn *c)
{
    free(c->pp);
    c->pp = NULL;
}

static void pp_none(struct conn *c)
{
}

static void pp_stop(struct conn *c)
{
    conn_close(c);
}

static const struct protocol protocol_proxy_header = {
    .name = "proxy-protocol",
    .readable = pp_readable,
    .writable = pp_none,
    .timeout = pp_timeout,
    .stop = pp_stop,
    .close = pp_close,
};

void proxy_header_start(struct conn *c)
{
    c->pp = calloc(1, sizeof *c->pp);
    if (!c->pp) {
        conn_close(c);
        return;
    }
    c->proto = &protocol_proxy_header;
    conn_watch(c, EV_READ);
    conn_arm(c, srv.rt->cfg.client_header_timeout);
}
