/* Resting listening sockets in a libev loop (see accept_rest.h). */
#include "accept_rest.h"

#include <stddef.h>

static void resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct as_accept_rest *r = (struct as_accept_rest *)((char *)t - offsetof(struct as_accept_rest, resume));

    (void)revents;
    for (int i = 0; i < r->n; i++)
        ev_io_start(loop, &r->watchers[i]);
}

void as_accept_rest_init(struct as_accept_rest *r, ev_io *watchers, int n)
{
    r->shortage = (struct as_accept_pause){ 0 };
    r->watchers = watchers;
    r->n = n;
    ev_timer_init(&r->resume, resume_cb, AS_ACCEPT_PAUSE, 0);
}

enum as_accept_next as_accept_rest_failed(struct ev_loop *loop, struct as_accept_rest *r, int err, long open)
{
    enum as_accept_next next = as_accept_failed(&r->shortage, err, ev_now(loop), open);

    if (next == AS_ACCEPT_PAUSE_NOW && !ev_is_active(&r->resume)) {
        for (int i = 0; i < r->n; i++)
            ev_io_stop(loop, &r->watchers[i]);
        ev_timer_set(&r->resume, AS_ACCEPT_PAUSE, 0);
        ev_timer_start(loop, &r->resume);
    }
    return next;
}

void as_accept_rest_stop(struct ev_loop *loop, struct as_accept_rest *r)
{
    ev_timer_stop(loop, &r->resume);
    for (int i = 0; i < r->n; i++)
        ev_io_stop(loop, &r->watchers[i]);
}
