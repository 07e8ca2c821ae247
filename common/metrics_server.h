/* The `metrics = ADDR` listen of appstackd and appstack-proxy: GET
 * /metrics answers the Prometheus text the program produces, GET /healthz
 * 200 while the program is ready and 503 otherwise. It runs in the
 * program's own libev loop: non-blocking sockets, a bounded number of
 * connections, one request per connection (Connection: close), so a slow
 * or hostile scraper never holds up serving. */
#ifndef APPSTACK_METRICS_SERVER_H
#define APPSTACK_METRICS_SERVER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accept_rest.h"
#include "prom.h"

#define MS_MAX_CONNS 16         /* more at once are closed at accept */
#define MS_TIMEOUT 5.0          /* s a scraper may take to send its request or read the answer */

struct ms_conn;

struct metrics_server {
    struct ev_loop *loop;
    int fd;
    bool inherited;             /* from systemd: not ours to remove */
    char *addr;                 /* as configured */
    ev_io accept_w;
    struct as_accept_rest rest;         /* out of descriptors: accept_w rests */
    struct ms_conn *conns;
    int n_conns;
    /* What the program provides. */
    void (*metrics)(void *ctx, struct prom *p);
    /* True while ready; else WHY (a short phrase) says why not. */
    bool (*ready)(void *ctx, const char **why);
    void *ctx;
    /* Its own figures, exported by metrics_server_text(). */
    uint64_t scrapes;
    uint64_t last_scrape_usec;  /* what building the last /metrics body took */
};

/* Opens ADDR (as [supervisor]/[proxy] listen takes it; a socket systemd
 * passed under that name or address is used) and serves it in LOOP. False
 * with a message in ERR. */
bool metrics_server_open(struct metrics_server *s, struct ev_loop *loop, const char *addr, char *err, size_t errlen);
/* ON: accepts on the listen; off: no more (a process that leaves the
 * scrapes to others), also after a pause for want of descriptors. */
void metrics_server_serve(struct metrics_server *s, bool on);
/* Closes the listen and every connection (a unix socket file we bound is
 * removed). Safe on a server never opened. */
void metrics_server_close(struct metrics_server *s);
/* The server's own samples (scrapes, the cost of the last one). */
void metrics_server_text(const struct metrics_server *s, struct prom *p);

#endif
