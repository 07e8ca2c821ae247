/* Connections to the upstreams (the workers' sockets): the choice of an
 * upstream and the keep-alive pool (upstream.c), and one exchange's
 * request and response over such a connection (upstream_io.c). What the
 * response means for the client is forward.c's business: the I/O here
 * calls back into it. */
#ifndef APPSTACK_PROXY_UPSTREAM_H
#define APPSTACK_PROXY_UPSTREAM_H

#include "exchange.h"

/* A header line of the response head: offsets into upconn.head. */
struct resp_span {
    uint32_t no, nl, vo, vl;
};

struct upconn {
    ev_io io;
    ev_timer timer;
    int fd;
    struct upstream *u;
    struct runtime *rt;
    struct exchange *x;     /* NULL while pooled */
    struct upconn *pool_next;
    llhttp_t parser;
    struct block *rbuf;     /* each read once the head is done */
    char *head;             /* the response head as read, up to proxy_buffer_size; kept while pooled */
    size_t head_len, head_cap;
    bool connecting;
    bool reused;            /* came from the pool */
    bool got_bytes;         /* a response byte arrived */
    bool head_done, msg_done, sending;
    bool in_value;          /* last header callback was a value */
    int n_hdr, cap_hdr;
    struct resp_span *hdr;      /* grows with the head; kept while pooled */
    uint32_t st_off, st_len;    /* reason phrase */
};

/* upstream.c */
/* The next upstream of G in turn, avoiding AVOID while others are left. */
struct upstream *upstream_pick(struct upstream_group *g, struct upstream *avoid);
/* A connection to UP: a pooled one unless FRESH, else a new one (perhaps
 * still connecting). NULL with errno when none could be made. */
struct upconn *upstream_take(struct runtime *rt, struct upstream *up, bool fresh);
/* Back to the pool when REUSABLE (and allowed), else closed. */
void upstream_release(struct upconn *u, bool reusable);
void upstream_failed(struct upstream *u);
/* A pooled connection had an event: the worker closed it. */
void upstream_idle_event(struct upconn *u);

/* upstream_io.c */
void upconn_init_parser(void);
void upconn_init(struct upconn *u);
/* Sends X's request (x->body, head in front) on U and reads the response. */
void upconn_start(struct upconn *u, struct exchange *x);

/* forward.c: what the I/O reports */
/* The connection broke before a response byte (CONNECT_FAILED: before the
 * request was sent). ERR is an errno or 0 for a close. */
void forward_broken(struct exchange *x, int err, bool connect_failed);
/* No usable response: STATUS, unless the client has a head already. */
void forward_fail(struct exchange *x, int status);
/* The response head is parsed (U's spans and parser). */
void forward_response_head(struct exchange *x, struct upconn *u);
/* The whole response is read; the connection may serve another request
 * when REUSABLE. */
void forward_response_done(struct exchange *x, bool reusable);

#endif
