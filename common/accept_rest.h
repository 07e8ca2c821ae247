/* The pause of accept_pause.h for a server in a libev loop: the watchers
 * of its listening sockets stop when accept4() runs out of descriptors or
 * memory, and start again AS_ACCEPT_PAUSE later, so that a connection
 * that stays queued does not make the loop spin. */
#ifndef APPSTACK_ACCEPT_REST_H
#define APPSTACK_ACCEPT_REST_H

#include <ev.h>

#include "accept_pause.h"

struct as_accept_rest {
    struct as_accept_pause shortage;
    ev_timer resume;
    ev_io *watchers;            /* the caller's, one per listening socket */
    int n;
};

/* WATCHERS (N of them) are what a pause stops and restarts. */
void as_accept_rest_init(struct as_accept_rest *r, ev_io *watchers, int n);

/* After accept4() failed with ERR, OPEN connections held: what to do next
 * (accept_pause.h); on AS_ACCEPT_PAUSE_NOW the watchers are already
 * stopped until the pause ends. */
enum as_accept_next as_accept_rest_failed(struct ev_loop *loop, struct as_accept_rest *r, int err, long open);

/* Stops the watchers and a pending restart (the caller stops serving). */
void as_accept_rest_stop(struct ev_loop *loop, struct as_accept_rest *r);

#endif
