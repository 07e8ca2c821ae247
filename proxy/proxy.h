/* appstack-proxy: the process-wide state and the reloadable runtime
 * configuration. Client connections are in conn.h, the requests on them in
 * exchange.h, upstream connections in upstream.h. */
#ifndef APPSTACK_PROXY_H
#define APPSTACK_PROXY_H

#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "accept_rest.h"
#include "buf.h"
#include "../common/config.h"  /* not the autoconf config.h in the build dir */
#include "log.h"
#include "http_parse.h"
#include "listen.h"
#include "netmask.h"
#include "static_path.h"

#define MAX_LISTEN 16
#define RESP_MEM_LIMIT (256u << 10)     /* upstream response bytes in RAM before spooling */
#define UPSTREAM_POOL_MAX 1024          /* idle keep-alive connections per upstream whose workers
                                           do not identify: one per concurrent request up to
                                           this, so high concurrency does not connect and close
                                           per request (workers close idle ones after their
                                           keepalive) */

struct location_rt {
    struct sp_location sp;
    char *alias;
    long expires;
    bool internal;          /* only X-Accel-Redirect reaches it */
    const struct as_limit *limit_cfg;
    struct limit *limit;    /* its own limit_req/limit_conn (limit.h), or NULL */
    int root_fd;            /* O_PATH of the alias directory, -1 = not (yet) there */
    dev_t dev;
    ino_t ino;
};

struct upconn;
struct conn;
struct site;
struct tls_rt;
struct balancer;

/* Everything HUP replaces. Connections hold a reference while they use it. */
struct runtime {
    int refs;
    struct as_config cfg;
    struct as_http_limits limits;   /* max_body: the largest of any site */
    struct location_rt *locs;   /* every site's, site after site */
    struct sp_location *sp;     /* the same locations, for static_resolve */
    size_t n_locs;
    struct site *sites;         /* site.h; the default site first, if any */
    size_t n_sites;
    struct site *default_site;  /* NULL: a Host no server_name matches gets 421 */
    struct site_names {
        struct site_name *slot;
        size_t mask;
        char *arena;            /* the names the slots point to (site.c) */
        uint64_t gen;           /* this runtime's, among every runtime's (site.h) */
    } names;
    struct tls_rt *tls;         /* certificates; NULL without TLS listens */
    char *hsts;                 /* "Strict-Transport-Security: ...\r\n", or NULL */
    size_t hsts_len;
    int https_port;             /* of the first TLS listen, for redirect_https */
    struct as_net *fronts;      /* real_ip_from: whose X-Forwarded-* are kept */
    size_t n_fronts;
    struct limit *lims;         /* limit.h: [proxy]'s, the sites', the locations' */
    size_t n_limits;
    struct limit *limit_proxy;  /* [proxy]'s, for every site, or NULL */
    struct as_net *limit_allow;
    size_t n_limit_allow;
    struct location_rt acme;    /* acme = on: the HTTP-01 answers (acme.h); alias NULL without */
};

/* The process-wide state. */
struct server {
    struct ev_loop *loop;
    struct runtime *rt;
    const char *config_path;
    int lfd[MAX_LISTEN];
    bool linherited[MAX_LISTEN];    /* from systemd: its queue outlives us */
    unsigned lflags[MAX_LISTEN];    /* AS_LISTEN_* as opened: fixed until a restart */
    ev_io lio[MAX_LISTEN];
    int n_listen;
    struct as_accept_rest accept_rest;  /* out of descriptors: lio rest */
    bool accepting;
    bool stopping;
    struct conn *conns;
    long n_conns;
    uint64_t requests;
    ev_timer tick;
    int slot;                       /* of this serving process (master.h); -1 in the master */
    bool notify;                    /* the master's: it alone talks to systemd */
    ev_tstamp watchdog_interval;
};

extern struct server srv;

/* runtime.c */
/* Everything but the certificates, which are loaded by runtime_load_tls
 * (the master never loads them: tls_check.c). NULL after printing the
 * errors as FILE:LINE: message. */
struct runtime *runtime_load(const char *path, bool report_warnings);
/* Whether a listen has "ssl" and the certificates are needed. */
bool runtime_wants_tls(const struct runtime *rt);
/* RT's TLS contexts (and with acme = on, the pair it adds), once; false
 * after printing the errors. */
bool runtime_load_tls(struct runtime *rt);
void runtime_put(struct runtime *rt);
struct runtime *runtime_get(struct runtime *rt);
/* RT replaces OLD (HUP): the requests waiting in OLD's sites go to the
 * sites of the same name in RT, upstreams no site lists any more drain. */
void runtime_retire(struct runtime *old, struct runtime *rt);
void runtime_revalidate(struct runtime *rt);
int proxy_check(const char *path);

/* tls_check.c, in the master: whether RT's certificates load, tried in a
 * short-lived child that prints what is wrong (true without TLS listens). */
bool tls_check_aside(struct runtime *rt);

/* conn.c */
void conn_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
void conns_stop(void);
/* TERM: the connections waiting in the queues of the sockets we bound are
 * accepted (none joins them any more), then those sockets are closed. */
void conns_take_queued(void);

/* forward.c */
void forward_init(void);

/* upstream.h, for main.c */
void upstream_close_all_idle(void);
void health_configure(void);
size_t upstream_listed(void);
size_t balancer_waiting(void);

/* accesslog.c */
void access_log_init(struct ev_loop *loop);
/* Writes the entries that wait for the end of the loop turn (stderr only). */
void access_log_flush(void);

/* Helpers shared by the response writers. */
const char *proxy_date(void);

#endif
