/* Upstreams: where forwarded requests go. Three objects, each with one
 * owner and one end:
 *
 *  - an upstream (struct upstream) is one address of the config (a host,
 *    or the workers' socket): its health, the workers behind it as far as
 *    their answers tell (struct upworker), its idle connections and its
 *    counts. Upstreams live in a registry shared by every runtime, so HUP
 *    keeps what the proxy knows about an address it still lists; one that
 *    no runtime lists any more drains: no new request, its requests in
 *    flight finish. upstream.c.
 *  - a balancer (struct balancer) is the list of upstreams one set of
 *    requests goes to (a runtime's, or a site's), with the queue of
 *    requests waiting for a worker. balancer.c picks, for each request, an
 *    upstream and a connection to a worker that is free, or queues it.
 *  - an upstream connection (struct upconn) belongs to the idle pool of
 *    its worker (or of its upstream while its worker is unknown) while
 *    idle, and to one exchange while it carries it. upstream_io.c moves the
 *    bytes of one exchange over it.
 *
 * docs/proxy.md ("Dispatch") says why requests wait in the proxy and not
 * in a worker's connection. */
#ifndef APPSTACK_PROXY_UPSTREAM_H
#define APPSTACK_PROXY_UPSTREAM_H

#include "exchange.h"

/* A header line of the response head: offsets into upconn.head. */
struct resp_span {
    uint32_t no, nl, vo, vl;
};

/* A worker that frees while a new connection of ours waits, unclaimed, in
 * its socket's backlog is likely to take that one next; it gets no other
 * request for this long unless the connection's worker has said who it is
 * first. */
#define UPSTREAM_HOLD 0.02
/* Requests go behind a worker's current one (pipelined on its connection)
 * only while many wait (upstream_offer), when they all are GET or HEAD
 * without a body: under a steady load of short requests a worker that ends
 * one finds the next one waiting instead of sleeping until the proxy sends
 * it. One goes behind a current one expected to take at most
 * UPSTREAM_PIPELINE_MAX (pathtime.h) that has not run longer already; a
 * second and more only while all that is ahead of the new one is expected
 * to take at most UPSTREAM_PIPELINE_AHEAD, up to UPSTREAM_PIPELINE_DEPTH.
 * One behind is enough where the proxy sends the next while the worker
 * serves the one before (a 1 ms page); requests of 0.1 ms need several.
 * More behind a 1 ms request only take requests out of the queue's order:
 * they cannot move to another worker that frees first, and a worker that
 * stalls (descheduled, collecting garbage) holds them all. */
#define UPSTREAM_PIPELINE_MAX 0.01
#define UPSTREAM_PIPELINE_AHEAD 0.002
#define UPSTREAM_PIPELINE_DEPTH 8
/* A pipelined request is copied into its connection's send buffer, so that
 * all the requests one loop turn puts behind a worker's current one go out
 * in one write, which wakes the worker once. */
#define UPSTREAM_PIPELINE_HEAD 4096
/* Attempts on pooled connections whose worker had closed them before any
 * byte of the request went out: not counted among a request's attempts
 * (nothing reached a worker), up to this many. */
#define UPSTREAM_UNSENT_MAX 16
/* A new connection that found a worker we knew (all were busy): no other
 * new connection to that upstream for this long while requests wait, so a
 * saturated upstream is not flooded with connections; an unknown idle
 * worker (after a scale-up) is still found within it. */
#define UPSTREAM_PROBE_BACKOFF 0.1

struct balancer;

struct upconn {
    ev_io io;
    ev_timer timer;
    int fd;
    struct upstream *u;     /* referenced */
    struct upworker *w;     /* the worker at the other end, once it said; else NULL */
    struct exchange *x;     /* the response being read; NULL while pooled */
    struct exchange *pipe_head, *pipe_tail;     /* pipelined behind x, in order (x->pipe_next) */
    int n_pipe;
    struct block *pipe_out;     /* their bytes not sent yet */
    struct upconn *flush_next;  /* on the list sent at the end of the loop turn */
    bool flush_queued;
    struct upconn *pool_next, **pool_pprev;     /* in an idle pool */
    llhttp_t parser;
    struct block *rbuf;     /* each read once the head is done */
    char *head;             /* the response head as read, up to proxy_buffer_size; kept while pooled */
    size_t head_len, head_cap;
    char *pend;             /* read past a response: the next pipelined one's start */
    size_t pend_len, pend_cap;
    bool connecting;
    bool reused;            /* came from a pool */
    bool close_after;       /* a pipelined request was given up: its answer would follow x's */
    bool unknown;           /* carries a request, worker not known yet: counted in u->unknown */
    bool got_bytes;         /* a response byte arrived */
    bool head_done, msg_done, sending;
    bool in_value;          /* last header callback was a value */
    int n_hdr, cap_hdr;
    struct resp_span *hdr;      /* grows with the head; kept while pooled */
    uint32_t st_off, st_len;    /* reason phrase */
};

/* One worker process behind an upstream, known from its Appstack-Worker
 * answer (common/worker_ident.h). Forgotten when its last connection
 * closes. */
struct upworker {
    uint64_t token;
    struct upstream *u;
    struct upworker *next;              /* u->workers */
    struct upworker *rprev, *rnext;     /* u->ready, while it has a free slot and an idle connection */
    struct upconn *idle;                /* its idle connections */
    struct upconn *current;             /* one carrying a request of ours */
    int n_idle, n_conns;
    int busy;                           /* our requests on it */
    int capacity;                       /* requests it serves at once */
    bool closing;                       /* closed a pooled connection under us: none is reused */
    ev_tstamp freed;                    /* when it last got a free slot */
};

/* What an upstream's workers say about themselves. */
enum up_kind {
    UP_UNKNOWN,     /* nothing yet */
    UP_AWARE,       /* they identify: requests go to free workers or wait in the proxy */
    UP_PLAIN,       /* they do not (another server, or the proxy is not trusted): any connection */
};

struct upstream {
    char *name;             /* as written in the config: APPSTACK_UPSTREAM */
    struct as_addr addr;
    int refs;               /* balancers, connections, exchanges */
    int listed;             /* balancers listing it; 0: draining */
    struct upstream *reg_next;
    enum up_kind kind;
    /* health.c */
    int fails;              /* failures since fails_since (passive) */
    ev_tstamp fails_since;
    ev_tstamp down_until;   /* out until then, */
    bool trial;             /* then one request at a time until one succeeds */
    bool check_failed;      /* the last active check failed: out */
    struct upcheck *check;  /* the active check in progress */
    ev_timer check_timer;
    struct upworker *workers;
    int n_workers;
    struct upworker ready;  /* ring head (only rprev/rnext used): most recently freed first */
    struct upconn *anon;    /* idle connections of unknown workers (UP_UNKNOWN, UP_PLAIN) */
    int n_anon;
    int outstanding;        /* our requests in flight */
    int slow_busy;          /* of those, slow ones (balancer.c) */
    int unknown;            /* of those, on connections whose worker has not said */
    ev_tstamp probe_after;  /* UPSTREAM_PROBE_BACKOFF */
    ev_timer kick;          /* a hold or a backoff ends: waiting requests may go */
    bool kicking, kick_again;   /* balancer_kick in progress, and called again meanwhile */
};

/* What an upstream can take now, best first. */
enum offer {
    OFFER_NONE,     /* every worker we know is busy: wait */
    OFFER_PROBE,    /* a new connection: an idle worker we do not know takes it, or the backlog holds it */
    OFFER_PIPELINE, /* behind a request about to end, on its connection */
    OFFER_OPEN,     /* any connection (workers that do not identify) */
    OFFER_READY,    /* an idle connection to a free worker */
};

/* A request expected to take at least this long (pathtime.h) is slow: the
 * balancer keeps one worker for the others while short requests come (in
 * the last BALANCER_FAST_RECENT seconds), but a slow request waits beside
 * that idle worker at most BALANCER_SLOW_HOLD seconds while no short one
 * waits. */
#define BALANCER_SLOW 0.05
#define BALANCER_FAST_RECENT 1.0
#define BALANCER_SLOW_HOLD 1.0

struct xqueue {
    struct exchange *head, *tail;
};

struct balancer {
    struct upstream **ups;
    size_t n, rr;               /* rr: where ties start */
    struct xqueue q[2];         /* waiting requests, in order: [0] short, [1] slow */
    size_t qlen;
    ev_tstamp last_fast;        /* a short request came */
    ev_timer qtimer;            /* the head's wait ends */
    struct balancer *wprev, *wnext;     /* on the list of balancers with waiting requests */
    bool retired;               /* its upstreams are no longer counted as listed by it */
};

/* upstream.c */
/* The registry's upstream for NAME (referenced), made when new. NULL with a
 * message in ERR when the address is bad. */
struct upstream *upstream_get(const char *name, char *err, size_t errlen);
struct upstream *upstream_ref(struct upstream *u);
void upstream_put(struct upstream *u);

/* What U can do for X now; PIPELINE only when the requests waiting are
 * many (at least one per worker we know of): then a worker that frees takes
 * the next one anyway, and the one behind its current request loses
 * nothing. */
enum offer upstream_offer(struct upstream *u, const struct exchange *x, bool many_wait, ev_tstamp now);
/* A connection to U for one request, as OFFER allows (a new one for
 * OFFER_PROBE; for OFFER_OPEN an idle one when there is one; for
 * OFFER_PIPELINE a busy one). NULL with errno when no connection could be
 * made. */
struct upconn *upstream_take(struct upstream *u, enum offer offer, const struct exchange *x, ev_tstamp now);
/* The current request on U is over: the pipelined one follows, or U goes
 * back to a pool when REUSABLE (and wanted), else is closed (and a
 * pipelined request is sent again elsewhere). */
void upstream_release(struct upconn *u, bool reusable);
/* X, pipelined on U, is given up before its turn. */
void upstream_unpipeline(struct upconn *u, struct exchange *x);
/* A pooled connection had an event: the worker closed it. */
void upstream_idle_event(struct upconn *u);
/* U, taken from a pool, broke before a response byte: its worker is
 * closing our idle connections. */
void upstream_worker_closing(struct upconn *u);
/* U's worker said who it is (TOKEN, CAPACITY). */
void upstream_identified(struct upconn *u, uint64_t token, int capacity);
/* U's response began without saying. */
void upstream_anonymous(struct upconn *u);
/* Closes the idle connections of every upstream no runtime lists. */
void upstream_drain_removed(void);
/* Closes every idle connection (stopping). */
void upstream_close_all_idle(void);
/* How many upstreams some balancer lists. */
size_t upstream_listed(void);
/* The first upstream of the registry (then u->reg_next). */
struct upstream *upstream_registry(void);

/* Calls balancer_kick for U at AT (or sooner, when already due sooner). */
void upstream_kick_at(struct upstream *u, ev_tstamp at);

/* health.c */
/* Whether U takes requests now (not out, and not on trial with one in
 * flight). */
bool upstream_healthy(const struct upstream *u, ev_tstamp now);
/* Whether U is in (/metrics): not taken out. */
bool upstream_up(const struct upstream *u, ev_tstamp now);
/* A request on U failed for a reason that says U may be down (WHY, for the
 * log): counted toward max_fails. */
void upstream_fault(struct upstream *u, const char *why);
/* A request on U succeeded. */
void upstream_success(struct upstream *u);
/* Starts or stops the active checks as the running config says. */
void health_configure(void);
/* U goes away: its check ends. */
void health_stop(struct upstream *u);

/* balancer.c */
/* A balancer over the upstreams named in NAMES (valid addresses). */
struct balancer *balancer_build(const struct as_strlist *names);
/* A balancer over UPS (N referenced upstreams; it takes the array and the
 * references). */
struct balancer *balancer_new(struct upstream **ups, size_t n);
/* B's runtime is replaced (HUP): its waiting requests go to HEIR, in front
 * (or stay, when HEIR is NULL), and upstreams no balancer lists any more
 * start draining. B still serves retries of the requests that started on
 * it. */
void balancer_retire(struct balancer *b, struct balancer *heir);
void balancer_free(struct balancer *b);
/* X to a free worker, or to the queue; AVOID is skipped while others are
 * healthy. */
void balancer_submit(struct balancer *b, struct exchange *x, struct upstream *avoid);
/* X leaves the queue (its client went away). */
void balancer_cancel(struct exchange *x);
/* U may take more now: waiting requests go to it. */
void balancer_kick(struct upstream *u);
size_t balancer_waiting(void);
/* Whether B has a healthy upstream other than U. */
bool balancer_other(const struct balancer *b, const struct upstream *u, ev_tstamp now);

/* upstream_io.c */
void upconn_init_parser(void);
void upconn_init(struct upconn *u);
/* Sends X's request (x->body, head in front) on U and reads the response. */
void upconn_start(struct upconn *u, struct exchange *x);
/* Sends X's request behind the one U carries (at the end of the loop
 * turn); its response follows. */
void upconn_pipeline(struct upconn *u, struct exchange *x);
/* Can U take a pipelined request of LEN bytes? */
bool upconn_pipe_room(const struct upconn *u, uint64_t len);
/* U is closing: off the send list. */
void upconn_forget(struct upconn *u);

/* forward.c: what the I/O reports */
/* The connection broke before a response byte (CONNECT_FAILED: before the
 * request was sent). ERR is an errno or 0 for a close. */
void forward_broken(struct exchange *x, int err, bool connect_failed);
/* No usable response: STATUS, unless the client has a head already. */
void forward_fail(struct exchange *x, int status);
/* X, pipelined, never reached the worker: once more, from the start. */
void forward_retry(struct exchange *x);
/* No connection or no response in time (CONNECTING: the connect): on
 * another upstream when that is safe, else 504. */
void forward_timed_out(struct exchange *x, bool connecting);
/* The response head is parsed (U's spans and parser). */
void forward_response_head(struct exchange *x, struct upconn *u);
/* The whole response is read; the connection may serve another request
 * when REUSABLE. */
void forward_response_done(struct exchange *x, bool reusable);

#endif
