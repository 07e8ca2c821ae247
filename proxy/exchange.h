/* An exchange: one request and its response on a client connection. The
 * connection's protocol creates it when a request starts and ends it with
 * exchange_finish(), its one exit, once the response is sent or cannot be.
 * In between it holds the request (parsed head, body), the runtime it
 * started on, the response bytes waiting for the client, and the upstream
 * connection while it is forwarded. */
#ifndef APPSTACK_PROXY_EXCHANGE_H
#define APPSTACK_PROXY_EXCHANGE_H

#include "conn.h"
#include "headw.h"
#include "request_id.h"

struct exchange {
    struct conn *c;             /* owner */
    struct exchange *next_free;
    struct runtime *rt;         /* referenced for the exchange's whole life */
    struct site *site;          /* the virtual host, once the head is in (site.h) */
    struct as_http_request *req;
    struct spool body;          /* request body (with the upstream head in front while forwarded) */
    struct spool out;           /* response bytes for the protocol to send */
    struct upconn *up;          /* while forwarded */
    struct upstream *upstream;  /* the last one tried (referenced): APPSTACK_UPSTREAM */
    int tries;                  /* upstream attempts */
    int unsent;                 /* of those, on pooled connections closed before we sent a byte */
    struct balancer *q_bal;     /* while it waits for a worker (balancer.c) */
    struct exchange *q_next, *q_prev;
    struct upstream *q_avoid;   /* a retry waits for another upstream than this one */
    ev_tstamp queued_at;
    ev_tstamp fwd_start;        /* forwarding began */
    ev_tstamp started;          /* a worker began on it (0: not known) */
    ev_tstamp queue_wait;       /* until then: APPSTACK_QUEUE_USEC */
    uint64_t path_key;          /* pathtime.h */
    struct exchange *pipe_next; /* pipelined on the same upstream connection */
    bool pipelinable;           /* GET or HEAD without a body */
    bool slow;                  /* expected to take BALANCER_SLOW or more */
    bool slow_counted;          /* in its upstream's slow_busy */
    int status;
    char id[AS_REQUEST_ID_MAX];  /* X-Request-ID: ours, or a trusted front's */
    ev_tstamp t0;
    ev_tstamp t_forward;        /* the request was read whole and went to forward_start */
    uint64_t usec;              /* its duration, once finished (access log, metrics) */
    bool head_only;             /* HEAD: the response has no body */
    bool http10;                /* the client spoke HTTP/1.0 */
    bool keep_alive;            /* the connection may serve another request after this one */
    bool static_req;            /* answered by the proxy, not forwarded */
    bool head_sent;             /* a response head was handed to the protocol */
    bool chunk_out;             /* the protocol frames the body in chunks */
    bool resp_done;             /* the whole response is in out */
    struct zenc *enc;           /* the body is compressed on the fly (compress.h) */
    struct tunnel *tunnel;      /* an admitted upgrade request, counted; after 101 a tunnel (tunnel.h) */
    struct accel *accel;        /* the upstream said X-Accel-Redirect (accel.h) */
    char client[48];            /* the client's address (realip.h): the log's, the limits' */
    uint16_t client_port;       /* 0: not known */
    bool limits_done;           /* limit_check passed it (limit.h) */
    struct limit *limit_conn;   /* counted in this limit_conn table */
    uint32_t limit_conn_i;
    ev_timer limit_wait;        /* limit_req: waiting for its turn */

    /* HTTP/2 (h2.c): one stream of the connection */
    bool h2;
    bool h2_chunked;            /* its body reaches the parser in chunks (no content-length) */
    bool h2_deferred;           /* nghttp2 waits for more of out */
    bool h2_answered;           /* dispatched or answered: more request data is dropped */
    bool h2_ws;                 /* a WebSocket by extended CONNECT (RFC 8441), forwarded as an upgrade */
    size_t h2_held;             /* DATA the tunnel holds, not yet given back to the client's window */
    int32_t stream_id;
    struct exchange *link_prev, *link_next;     /* the connection's streams */
};

/* A new exchange on C, on the current runtime. */
struct exchange *exchange_new(struct conn *c);
/* The one exit: the access log entry (when COMPLETED: the whole response
 * went out), then every resource the exchange holds. X is gone after it. */
void exchange_finish(struct exchange *x, bool completed);
/* The request's head is in: its site is chosen and its body goes to
 * x->body from now on. False when the request is answered already (no site
 * of that name, a body over the site's limit). */
bool exchange_head_done(struct exchange *x);
/* The whole request is in: serve it from disk or forward it. */
void exchange_dispatch(struct exchange *x);
/* Answers STATUS in place of any response not yet begun; CLOSE_AFTER ends
 * the connection afterwards. */
void exchange_error(struct exchange *x, int status, bool close_after);
/* The response broke after its head went out. */
void exchange_abort(struct exchange *x);
/* "https" or "http": how the client reached the proxy. */
static inline const char *exchange_scheme(const struct exchange *x)
{
    return x->c->tp->secure ? "https" : "http";
}

/* resp.c: responses, through the connection's protocol. A head is
 * resp_head (or resp_head_begin), header lines written to W, then
 * resp_head_end. */
/* Starts W on x->out with the status, Server and Date; records the status
 * for the log. */
void resp_head(struct exchange *x, struct headw *w, int status);
/* Starts W on x->out with a status and reason from elsewhere (forwarding). */
void resp_head_begin(struct exchange *x, struct headw *w, int status, const char *reason, size_t reason_len);
/* The protocol's framing of the body, then W into x->out. */
void resp_head_end(struct exchange *x, struct headw *w, enum body_kind body);
/* Body bytes (encoded when x->enc, framed as the protocol chose). Returns
 * 0, or -1 (temp file). */
int resp_body(struct exchange *x, const char *data, size_t len);
/* The same without the encoder: bytes that are the body as sent. */
int resp_body_raw(struct exchange *x, const char *data, size_t len);
/* The response is complete. */
void resp_done(struct exchange *x);
/* Hands what is queued in x->out to the protocol. */
void resp_output(struct exchange *x);
/* A whole short text/plain response; EXTRA is more header lines or NULL. */
void resp_simple(struct exchange *x, int status, const char *extra);

/* static_serve.c */
void static_serve(struct exchange *x, const struct location_rt *loc, const char *rel, const char *path);

/* forward.c */
void forward_start(struct exchange *x);
/* The client is a front server (real_ip_from) whose X-Forwarded-* and
 * X-Request-ID the proxy keeps. */
bool exchange_from_front(const struct exchange *x);
/* Gives the upstream connection back (not reusable). */
void forward_detach(struct exchange *x);
/* The exchange ends: out of any queue, connection and upstream released. */
void forward_end(struct exchange *x);

/* accesslog.c */
void access_log(struct exchange *x);

#endif
