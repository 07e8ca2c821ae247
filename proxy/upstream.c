/* Upstream choice (round robin, passive health) and connections to the
 * workers, with a bounded keep-alive pool per upstream. */
#include "upstream.h"
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void upstream_failed(struct upstream *u)
{
    PM_INC(up_marked_down);
    u->down_until = ev_now(srv.loop) + UPSTREAM_FAIL_SECONDS;
}

/* Next upstream in turn, skipping AVOID and the ones marked down while any
 * other is left; when all are down, the next one anyway (better a try than
 * a certain 502). */
struct upstream *upstream_pick(struct upstream_group *g, struct upstream *avoid)
{
    ev_tstamp now = ev_now(srv.loop);
    size_t fallback = g->n;

    for (size_t i = 0; i < g->n; i++) {
        size_t k = (g->rr + i) % g->n;
        struct upstream *u = g->v[k];
        if (u == avoid && g->n > 1)
            continue;
        if (u->down_until > now) {
            if (fallback == g->n)
                fallback = k;
            continue;
        }
        g->rr = k + 1;
        return u;
    }
    if (fallback == g->n)
        fallback = 0;   /* not reached: each upstream but AVOID was returned or is a fallback */
    g->rr = fallback + 1;
    return g->v[fallback];
}

static void close_upconn(struct upconn *u)
{
    ev_io_stop(srv.loop, &u->io);
    ev_timer_stop(srv.loop, &u->timer);
    if (close(u->fd) < 0 && errno != EINTR)
        as_debug("close upstream: %s", strerror(errno));
    block_put(u->rbuf);
    free(u->head);
    free(u->hdr);
    runtime_put(u->rt);
    free(u);
    PM_DEC(up_open);
}

static void pool_remove(struct upconn *u)
{
    struct upconn **p;

    for (p = &u->u->idle; *p; p = &(*p)->pool_next) {
        if (*p == u) {
            *p = u->pool_next;
            u->u->n_idle--;
            PM_DEC(up_idle);
            return;
        }
    }
}

/* A pooled connection became readable: the worker closed it (or sent
 * something unasked). Either way it is of no more use. */
void upstream_idle_event(struct upconn *u)
{
    pool_remove(u);
    close_upconn(u);
}

static struct upconn *connect_new(struct runtime *rt, struct upstream *up)
{
    struct upconn *u;
    int fd = socket(up->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        as_err("upstream %s: socket: %s", up->name, strerror(errno));
        return NULL;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    u->fd = fd;
    u->u = up;
    u->rt = runtime_get(rt);
    PM_INC(up_open);
    PM_INC(up_connects);
    upconn_init(u);
    if (connect(fd, (const struct sockaddr *)&up->addr.sa, up->addr.len) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            PM_INC(up_connect_errors);
            as_warn("upstream %s: connect: %s", up->name, strerror(e));
            close_upconn(u);
            errno = e;
            return NULL;
        }
        u->connecting = true;
    }
    return u;
}

struct upconn *upstream_take(struct runtime *rt, struct upstream *up, bool fresh)
{
    struct upconn *u;

    if (!fresh && up->idle) {
        u = up->idle;
        up->idle = u->pool_next;
        up->n_idle--;
        PM_DEC(up_idle);
        u->pool_next = NULL;
        u->reused = true;       /* its read watcher stays on: no epoll_ctl */
        return u;
    }
    u = connect_new(rt, up);
    if (!u && errno != EAGAIN)
        upstream_failed(up);
    return u;
}

void upstream_release(struct upconn *u, bool reusable)
{
    struct upstream *up = u->u;

    u->x = NULL;
    ev_timer_stop(srv.loop, &u->timer);
    if (!reusable || srv.stopping || u->rt != srv.rt || up->n_idle >= UPSTREAM_POOL_MAX) {
        close_upconn(u);
        return;
    }
    block_put(u->rbuf);
    u->rbuf = NULL;
    up->down_until = 0;
    u->pool_next = up->idle;
    up->idle = u;
    up->n_idle++;
    PM_INC(up_idle);
    /* Readable while idle means the worker closed it. */
    if (!ev_is_active(&u->io) || (u->io.events & (EV_READ | EV_WRITE)) != EV_READ) {
        ev_io_stop(srv.loop, &u->io);
        ev_io_set(&u->io, u->fd, EV_READ);
        ev_io_start(srv.loop, &u->io);
    }
}

void upstream_close_idle(struct runtime *rt)
{
    for (size_t i = 0; i < rt->n_ups; i++) {
        struct upstream *up = &rt->ups[i];
        while (up->idle) {
            struct upconn *u = up->idle;
            up->idle = u->pool_next;
            up->n_idle--;
            PM_DEC(up_idle);
            close_upconn(u);
        }
    }
}
