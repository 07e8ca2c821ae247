/* appstack-proxy: the shared types of the event loop, client connections,
 * upstream connections and the reloadable runtime configuration. */
#ifndef APPSTACK_PROXY_H
#define APPSTACK_PROXY_H

#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "../common/config.h"  /* not the autoconf config.h in the build dir */
#include "log.h"
#include "http_parse.h"
#include "listen.h"
#include "static_path.h"

#define MAX_LISTEN 16
#define RESP_MEM_LIMIT (256u << 10)     /* upstream response bytes in RAM before spooling */
#define UPSTREAM_POOL_MAX 1024          /* idle keep-alive connections per upstream: one per
                                           concurrent request up to this, so high concurrency
                                           does not connect and close per request (workers
                                           close idle ones after their keepalive) */
#define UPSTREAM_FAIL_SECONDS 10.0      /* a failed upstream is skipped this long */
#define LINGER_SECONDS 2.0
#define MAX_RESP_HEADERS 128

struct location_rt {
    struct sp_location sp;
    char *alias;
    long expires;
    int root_fd;            /* O_PATH of the alias directory, -1 = not (yet) there */
    dev_t dev;
    ino_t ino;
};

struct upconn;

struct upstream {
    char *name;             /* as written in the config: APPSTACK_UPSTREAM */
    struct as_addr addr;
    ev_tstamp down_until;   /* passive health: skip until then */
    struct upconn *idle;    /* keep-alive pool */
    int n_idle;
};

/* Everything HUP replaces. Connections hold a reference while they use it. */
struct runtime {
    int refs;
    struct as_config cfg;
    struct as_http_limits limits;
    struct location_rt *locs;
    struct sp_location *sp;     /* the same locations, for static_resolve */
    size_t n_locs;
    struct upstream *ups;
    size_t n_ups;
    size_t rr;                  /* round-robin cursor */
};

enum cstate {
    C_IDLE,         /* keep-alive, between requests: no buffers held */
    C_HEAD,         /* reading a request head */
    C_BODY,         /* reading its body */
    C_UPSTREAM,     /* waiting for the upstream's response head */
    C_WRITE,        /* sending a response */
    C_LINGER,       /* error sent, draining input before close */
};

struct conn {
    ev_io io;
    ev_timer timer;
    struct conn *prev, *next;
    int fd;
    enum cstate state;
    bool keep_alive;        /* this request's response leaves the connection open */
    bool resp_done;         /* the whole response is queued in out */
    bool head_only;
    bool writing;           /* io watches EV_WRITE */
    bool client_http10;
    bool static_req;        /* served from disk, not forwarded */
    struct block *in;       /* read buffer, only while a request is read */
    struct as_http_request *req;
    struct runtime *rt;     /* referenced while a request is in progress */
    struct spool body;      /* request body */
    struct spool out;       /* response bytes for the client */
    struct upconn *up;
    struct upstream *upstream;
    int tries;              /* upstream attempts for this request */
    int status;
    ev_tstamp t0;
    char peer[48];
};

struct upconn {
    ev_io io;
    ev_timer timer;
    int fd;
    struct upstream *u;
    struct runtime *rt;
    struct conn *c;         /* NULL while pooled */
    struct upconn *pool_next;
    llhttp_t parser;
    struct block *rbuf;     /* response head bytes, then each read */
    bool connecting;
    bool reused;            /* came from the pool */
    bool got_bytes;         /* a response byte arrived */
    bool head_done, msg_done, sending;
    bool chunk_out;         /* re-chunk the body for the client */
    bool close_out;         /* the client's response ends at EOF */
    bool in_value;          /* last header callback was a value */
    int n_hdr;
    struct { uint16_t no, nl, vo, vl; } hdr[MAX_RESP_HEADERS];
    uint16_t st_off, st_len;    /* reason phrase */
};

/* The process-wide state. */
struct server {
    struct ev_loop *loop;
    struct runtime *rt;
    const char *config_path;
    int lfd[MAX_LISTEN];
    ev_io lio[MAX_LISTEN];
    int n_listen;
    bool accepting;
    bool stopping;
    struct conn *conns;
    long n_conns;
    uint64_t requests;
    ev_timer tick;
    bool notify;
    ev_tstamp watchdog_interval, last_watchdog, last_status;
    uint64_t status_requests;
};

extern struct server srv;

/* runtime.c */
struct runtime *runtime_load(const char *path, bool report_warnings);
void runtime_put(struct runtime *rt);
struct runtime *runtime_get(struct runtime *rt);
void runtime_revalidate(struct runtime *rt);
int proxy_check(const char *path);

/* conn.c */
void conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
void conn_send_error(struct conn *c, int status, bool close_after);
void conn_flush(struct conn *c);
void conn_response_started(struct conn *c);
void conn_abort(struct conn *c);
void conns_stop_idle(void);

/* static_serve.c */
void static_serve(struct conn *c, const struct location_rt *loc, const char *rel, const char *path);

/* forward.c */
void forward_start(struct conn *c);
void forward_detach(struct conn *c);
void forward_init(void);
void forward_init_upconn(struct upconn *u);

/* upstream.c */
struct upconn *upstream_take(struct conn *c, bool fresh, struct upstream *avoid);
void upstream_release(struct upconn *u, bool reusable);
void upstream_failed(struct upstream *u);
void upstream_close_idle(struct runtime *rt);
void upstream_idle_event(struct upconn *u);

/* accesslog.c */
void access_log_init(struct ev_loop *loop);
void access_log(struct conn *c);
/* Writes the entries that wait for the end of the loop turn (stderr only). */
void access_log_flush(void);

/* Helpers shared by the response writers. */
const char *proxy_date(void);

#endif
