/* A client connection: the socket, a transport that moves its bytes (plain
 * sockets; an encrypted transport slots in beside it) and a protocol that
 * frames requests and responses on it (HTTP/1.1). The connection owns the
 * exchanges (exchange.h) its protocol starts, and ends them before it ends
 * itself.
 *
 * Exchanges talk to the protocol only through struct protocol's response
 * operations, so a protocol with many exchanges per connection, each with
 * its own response stream, needs no change in the code that produces
 * responses (static files, forwarding, errors). */
#ifndef APPSTACK_PROXY_CONN_H
#define APPSTACK_PROXY_CONN_H

#include "proxy.h"
#include "site.h"

struct conn;
struct exchange;
struct headw;
struct h2;

/* How bytes move between the socket and the protocol. */
struct transport {
    const char *name;
    bool secure;            /* TLS: the client's scheme is https */
    /* Reads up to LEN bytes: the count, 0 at the peer's end of stream, or -1
     * with errno (EAGAIN: nothing to read now). */
    ssize_t (*recv)(struct conn *c, void *buf, size_t len);
    /* Sends what S holds: 1 when all is sent, 0 when the socket takes no
     * more now, -1 on error (errno). */
    int (*send)(struct conn *c, struct spool *s);
    /* Ends our direction while the peer may still send (lingering close). */
    void (*shutdown)(struct conn *c);
    /* Releases what the transport holds; the connection closes the socket. */
    void (*close)(struct conn *c);
};

/* How the response of an exchange is framed: known length (Content-Length
 * among the head's lines), unknown length (the protocol chooses how the
 * end is marked), or no body at all (HEAD, 204, 304). */
enum body_kind { BODY_LENGTH, BODY_UNKNOWN, BODY_NONE };

/* How requests and responses are framed on the connection. */
struct protocol {
    const char *name;
    /* The connection is ready for the protocol (accepted, handshake done). */
    void (*start)(struct conn *c);
    /* Socket events and the connection's timer. */
    void (*readable)(struct conn *c);
    void (*writable)(struct conn *c);
    void (*timeout)(struct conn *c);
    /* A response head, written through W into x->out: head_begin, then
     * header lines ("Name: value\r\n") from the caller, then head_end
     * (the caller flushes W after it). */
    void (*head_begin)(struct exchange *x, struct headw *w, int status, const char *reason, size_t reason_len);
    void (*head_end)(struct exchange *x, struct headw *w, enum body_kind body);
    /* More of the response is in x->out, or it is complete (x->resp_done). */
    void (*output)(struct exchange *x);
    /* The response cannot be completed (it is cut after its head went out):
     * the client must learn it broke. */
    void (*abort)(struct exchange *x);
    /* TERM: end the connection after the exchanges in progress. */
    void (*stop)(struct conn *c);
    /* From conn_close: finish every exchange (not completed), release the
     * protocol's state. */
    void (*close)(struct conn *c);
};

extern const struct transport transport_plain;
extern const struct transport transport_tls;
extern const struct protocol protocol_h1;
extern const struct protocol protocol_h2;

struct conn {
    ev_io io;
    ev_timer timer;
    struct conn *prev, *next;
    int fd;
    const struct transport *tp;
    const struct protocol *proto;
    uint8_t want;           /* events the protocol watches */
    uint8_t tp_want;        /* and the transport besides: a TLS read that must write first, or the reverse */
    bool tp_pending;        /* the transport holds read bytes the socket will not announce */
    uint8_t lflags;         /* AS_LISTEN_* of the listen it came from */
    char peer[48];          /* the client: the socket's peer, or what a trusted PROXY header said */
    uint16_t peer_port;     /* 0 on unix sockets */
    struct pp_stage *pp;    /* reading a PROXY protocol header (proxy_header.c) */

    /* TLS (tls_conn.c) */
    struct ssl_st *ssl;
    bool ktls;              /* the kernel encrypts: files go out with sendfile */
    bool tls_shut;          /* close_notify sent */

    /* HTTP/1.1 (h1.c) */
    int state;              /* enum h1_state */
    bool writing;           /* io watches EV_WRITE */
    struct block *in;       /* read buffer, only while a request is read */
    struct exchange *x;     /* the exchange in progress, NULL between requests */
    unsigned n_exchanges;   /* in progress (exchange.c): active while > 0 */
    bool fresh;             /* no request yet: an h2c preface may come */

    /* HTTP/2 (h2.c) */
    struct h2 *h2;

    struct site_memo site_memo; /* its requests' last Host (site.h) */
};

/* Watches EVENTS (EV_READ | EV_WRITE, or 0) on the socket; only a change
 * costs an epoll_ctl. */
static inline void conn_watch(struct conn *c, int events)
{
    c->want = (uint8_t)events;
    events |= c->tp_want;
    if ((events & EV_READ) && c->tp_pending)
        ev_feed_event(srv.loop, &c->io, EV_READ);
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(srv.loop, &c->io);
    if (!events)
        return;
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(srv.loop, &c->io);
}

/* (Re)starts the connection's timer. */
static inline void conn_arm(struct conn *c, double seconds)
{
    c->timer.repeat = seconds;
    ev_timer_again(srv.loop, &c->timer);
}
/* The connection is accepted (and its PROXY header read): TLS, if its
 * listen has it, then its protocol. */
void conn_begin(struct conn *c);
/* Sends what waits in S through the connection's transport: 1 all of it
 * went, 0 the socket is full, -1 it failed (logged at debug level unless
 * the client just went away). */
int conn_send(struct conn *c, struct spool *s);
/* LEN relayed bytes for the client after what waits in S: on a plain
 * connection with nothing waiting, straight to the socket (spool_write);
 * otherwise queued and sent as conn_send does. Same results. */
int conn_write(struct conn *c, struct spool *s, const void *data, size_t len);
/* The one end of a connection: ends its exchanges (not completed), releases
 * the transport, closes the socket. */
void conn_close(struct conn *c);

#endif
