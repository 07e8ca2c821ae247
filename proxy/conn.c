/* Client connections: accept, the connection's one end, and the socket and
 * timer events, which go to the connection's protocol. The plain transport
 * is here too: bytes straight from and to the socket (sendfile for files). */
#include "conn.h"
#include "accept_rest.h"
#include "http_reply.h"
#include "linger.h"
#include "tls.h"
#include "realip.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64
/* At a stop, the listen queue is taken until it has been empty this long
 * (a handshake under way takes one round trip to land in it), for at most
 * TAKE_QUEUED_SETTLE_MAX: the loop waits that long once, at the stop. */
#define TAKE_QUEUED_QUIET 0.05
#define TAKE_QUEUED_SETTLE_MAX 0.5

static ssize_t plain_recv(struct conn *c, void *buf, size_t len)
{
    return recv(c->fd, buf, len, 0);
}

static int plain_send(struct conn *c, struct spool *s)
{
    return spool_send(s, c->fd);
}

static void plain_shutdown(struct conn *c)
{
    as_linger_begin(c->fd);     /* failed: the linger timer still closes it */
}

static void plain_close(struct conn *c)
{
}

const struct transport transport_plain = {
    .name = "plain",
    .secure = false,
    .recv = plain_recv,
    .send = plain_send,
    .shutdown = plain_shutdown,
    .close = plain_close,
};

int conn_send(struct conn *c, struct spool *s)
{
    int r = c->tp->send(c, s);

    if (r < 0 && errno != EPIPE && errno != ECONNRESET)
        as_debug("send to %s: %s", c->peer, strerror(errno));
    return r;
}

int conn_write(struct conn *c, struct spool *s, const void *data, size_t len)
{
    int r;

    if (c->tp != &transport_plain) {
        if (spool_append(s, data, len) < 0)
            return -1;
        return conn_send(c, s);
    }
    r = spool_write(s, c->fd, data, len);
    if (r < 0 && errno != EPIPE && errno != ECONNRESET)
        as_debug("send to %s: %s", c->peer, strerror(errno));
    return r;
}

void conn_close(struct conn *c)
{
    c->proto->close(c);
    c->tp->close(c);
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
    PM_DEC(open);
    if (srv.stopping && srv.n_conns == 0)
        ev_break(srv.loop, EVBREAK_ALL);
}

static void peer_name(struct conn *c, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer, sizeof c->peer);
        c->peer_port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer, sizeof c->peer);
        c->peer_port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    } else
        snprintf(c->peer, sizeof c->peer, "unix");
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, io));

    if (__builtin_expect(c->tp_want != 0, 0)) {
        /* The transport waited for the other direction: its read (or
         * write) is retried now, and the watch is the protocol's again. */
        int tw = c->tp_want;
        c->tp_want = 0;
        conn_watch(c, c->want);
        if ((tw & EV_WRITE) && (revents & EV_WRITE)) {
            c->proto->readable(c);
            return;
        }
        if ((tw & EV_READ) && (revents & EV_READ)) {
            c->proto->writable(c);
            return;
        }
    }
    if (revents & EV_WRITE) {
        c->proto->writable(c);
        return;
    }
    if (revents & EV_READ)
        c->proto->readable(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, timer));

    c->proto->timeout(c);
}

/* Beyond max_connections: a fast 503, never a queue. */
static void reject(int fd)
{
    char msg[AS_HTTP_REPLY_MAX], sink[4096];
    size_t n = as_http_reply(msg, sizeof msg, 503, proxy_date(), false, false, false, NULL);

    PM_INC(refused);
    if (send(fd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        as_debug("503 to an excess connection: %s", strerror(errno));
    /* Unread request bytes would turn our close into a reset that may
     * destroy the 503 before the client reads it (linger.h); this one
     * does not wait for more. */
    if (as_linger_begin(fd))
        as_linger_drain(fd, sink, sizeof sink, 16);
    close(fd);
}

static void conn_new(int fd, const struct sockaddr_storage *ss, unsigned lflags)
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
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    ev_init(&c->timer, conn_timer_cb);
    c->next = srv.conns;
    if (srv.conns)
        srv.conns->prev = c;
    srv.conns = c;
    srv.n_conns++;
    PM_INC(accepted);
    PM_INC(open);
    c->tp = &transport_plain;
    c->proto = &protocol_h1;
    c->lflags = (uint8_t)lflags;
    if (lflags & AS_LISTEN_PROXY_PROTOCOL) {
        proxy_header_start(c);
        return;
    }
    conn_begin(c);
}

void conn_begin(struct conn *c)
{
    c->proto = &protocol_h1;
    if (c->lflags & AS_LISTEN_SSL) {
        if (!tls_conn_start(c)) {
            conn_close(c);
            return;
        }
    }
    c->proto->start(c);
}

/* An accepted connection: served, or refused over max_connections. */
static void admit(int fd, const struct sockaddr_storage *ss, unsigned lflags)
{
    if (srv.n_conns >= srv.rt->cfg.max_connections) {
        if (lflags & AS_LISTEN_SSL)
            close(fd);          /* no plain answer a TLS client could read */
        else
            reject(fd);
    } else {
        conn_new(fd, ss, lflags);
    }
}

void conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sockaddr_storage ss;
    unsigned lflags = srv.lflags[(ev_io *)w - srv.lio];
    socklen_t len;
    int fd;

    for (int i = 0; i < ACCEPT_BATCH && srv.accepting; i++) {
        len = sizeof ss;
        fd = accept4(w->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (as_accept_rest_failed(loop, &srv.accept_rest, errno, srv.n_conns) == AS_ACCEPT_AGAIN)
                continue;
            return;
        }
        admit(fd, &ss, lflags);
    }
}

/* Accepts and admits every connection queued on listen socket I. */
static long take_queue(int i)
{
    struct sockaddr_storage ss;
    socklen_t len;
    long taken = 0;
    int fd;

    for (;;) {
        len = sizeof ss;
        fd = accept4(srv.lfd[i], (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return taken;       /* EAGAIN: the queue is empty; anything else: nothing to take */
        }
        taken++;
        admit(fd, &ss, srv.lflags[i]);
    }
}

void conns_take_queued(void)
{
    struct pollfd p[MAX_LISTEN];
    double settled_by = ev_time() + TAKE_QUEUED_SETTLE_MAX;
    long taken = 0;
    nfds_t n = 0;
    int idx[MAX_LISTEN];

    for (int i = 0; i < srv.n_listen; i++) {
        if (srv.linherited[i] || srv.lfd[i] < 0)
            continue;           /* systemd keeps it, and its queue, for the next start */
        if (!as_listen_refuse_new(srv.lfd[i]))
            /* EPERM: a kernel that wants CAP_NET_ADMIN for socket filters.
             * New connections are then served too, until none comes. */
            as_info("stopping: listen socket %d stays open to new connections until its queue is empty: %s",
                    srv.lfd[i], strerror(errno));
        p[n] = (struct pollfd){ .fd = srv.lfd[i], .events = POLLIN };
        idx[n++] = i;
    }
    /* Handshakes under way when the socket stopped taking new ones still
     * complete into the queue (their last ACK passes the filter): the queue
     * is taken until it has stayed empty for TAKE_QUEUED_QUIET. */
    for (;;) {
        for (nfds_t k = 0; k < n; k++)
            taken += take_queue(idx[k]);
        if (n == 0 || ev_time() >= settled_by)
            break;
        int r = poll(p, n, (int)(TAKE_QUEUED_QUIET * 1000));
        if (r < 0 && errno != EINTR) {
            as_warn("stopping: poll on the listen sockets: %s", strerror(errno));
            break;
        }
        if (r == 0)
            break;
    }
    for (nfds_t k = 0; k < n; k++) {
        if (close(srv.lfd[idx[k]]) < 0)
            as_warn("stopping: close listen socket: %s", strerror(errno));
        srv.lfd[idx[k]] = -1;
    }
    if (taken)
        as_info("stopping: %ld connections taken from the listen queues", taken);
}

void conns_stop(void)
{
    /* stop may end a connection (an idle HTTP/2 one, after its GOAWAY) */
    for (struct conn *c = srv.conns, *next; c; c = next) {
        next = c->next;
        c->proto->stop(c);
    }
}
