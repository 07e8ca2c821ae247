/* Upstreams (upstream.h): the registry that runtimes share, passive
 * health, the workers behind each upstream as their answers tell, and the
 * idle connections, pooled per worker. */
#include "upstream.h"
#include "metrics.h"
#include "pathtime.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct upstream *registry;

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    balancer_kick((struct upstream *)((char *)w - offsetof(struct upstream, kick)));
}

struct upstream *upstream_get(const char *name, char *err, size_t errlen)
{
    struct upstream *u;

    for (u = registry; u; u = u->reg_next)
        if (!strcmp(u->name, name))
            return upstream_ref(u);
    u = calloc(1, sizeof *u);
    if (!u || !(u->name = strdup(name))) {
        free(u);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!as_addr_parse(name, &u->addr, err, errlen)) {
        free(u->name);
        free(u);
        return NULL;
    }
    u->refs = 1;
    u->ready.rprev = u->ready.rnext = &u->ready;
    ev_init(&u->kick, kick_cb);
    u->reg_next = registry;
    registry = u;
    return u;
}

struct upstream *upstream_ref(struct upstream *u)
{
    u->refs++;
    return u;
}

/* The last reference goes with the last connection, exchange and
 * balancer: nothing of the upstream is left to release but itself. */
void upstream_put(struct upstream *u)
{
    struct upstream **p;

    if (!u || --u->refs > 0)
        return;
    for (p = &registry; *p; p = &(*p)->reg_next) {
        if (*p == u) {
            *p = u->reg_next;
            break;
        }
    }
    if (srv.loop)
        ev_timer_stop(srv.loop, &u->kick);
    health_stop(u);
    free(u->name);
    free(u);
}

void upstream_kick_at(struct upstream *u, ev_tstamp at)
{
    ev_tstamp now = ev_now(srv.loop);

    if (ev_is_active(&u->kick) && now + ev_timer_remaining(srv.loop, &u->kick) <= at)
        return;
    ev_timer_stop(srv.loop, &u->kick);
    ev_timer_set(&u->kick, at > now ? at - now : 0, 0);
    ev_timer_start(srv.loop, &u->kick);
}

/* ---- workers ---------------------------------------------------------- */

static void ready_remove(struct upworker *w)
{
    if (!w->rnext)
        return;
    w->rprev->rnext = w->rnext;
    w->rnext->rprev = w->rprev;
    w->rnext = w->rprev = NULL;
}

/* Keeps W on its upstream's ready ring exactly while it has a free slot
 * and an idle connection; newly ready ones go first (warm caches). */
static void worker_update(struct upworker *w)
{
    bool ready = w->busy < w->capacity && w->idle;
    struct upworker *head = &w->u->ready;

    if (ready && !w->rnext) {
        w->rnext = head->rnext;
        w->rprev = head;
        head->rnext->rprev = w;
        head->rnext = w;
    } else if (!ready) {
        ready_remove(w);
    }
}

static struct upworker *worker_find(struct upstream *u, uint64_t token)
{
    for (struct upworker *w = u->workers; w; w = w->next)
        if (w->token == token)
            return w;
    return NULL;
}

/* Its last connection is gone: nothing more to know about it. */
static void worker_forget(struct upworker *w)
{
    struct upworker **p;

    ready_remove(w);
    for (p = &w->u->workers; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    w->u->n_workers--;
    free(w);
}

/* A ready worker that may take a request now: while a new connection of
 * ours waits unclaimed, a worker that just freed is probably about to take
 * it from the backlog, so only one free for UPSTREAM_HOLD already counts. */
static struct upworker *ready_worker(struct upstream *u, ev_tstamp now)
{
    struct upworker *w;

    if (u->ready.rnext == &u->ready)
        return NULL;
    if (!u->unknown)
        return u->ready.rnext;
    w = u->ready.rprev;     /* freed longest ago */
    if (w->freed + UPSTREAM_HOLD <= now)
        return w;
    upstream_kick_at(u, w->freed + UPSTREAM_HOLD);
    return NULL;
}

/* A busy worker a request may wait behind (UPSTREAM_PIPELINE_MAX and
 * _AHEAD): all it has of ours is on one connection, GET or HEAD, expected
 * to end within the limit, and the current one has not run longer already;
 * the one expected to be done first. */
static struct upworker *pipeline_worker(struct upstream *u, uint64_t len, ev_tstamp now)
{
    struct upworker *best = NULL;
    double best_left = 0;

    for (struct upworker *w = u->workers; w; w = w->next) {
        struct upconn *c = w->current;
        double ran, left;
        if (w->capacity != 1 || !c || !c->x || w->busy != 1 + c->n_pipe || c->n_pipe >= UPSTREAM_PIPELINE_DEPTH
            || c->sending || c->connecting || c->close_after || !c->x->pipelinable || !c->x->started
            || !upconn_pipe_room(c, len))
            continue;
        ran = now - c->x->started;
        left = pathtime_expect(c->x->path_key) - ran;
        for (struct exchange *p = c->pipe_head; p; p = p->pipe_next)
            left += pathtime_expect(p->path_key);
        if (ran > UPSTREAM_PIPELINE_MAX || left + ran > (c->n_pipe ? UPSTREAM_PIPELINE_AHEAD : UPSTREAM_PIPELINE_MAX))
            continue;
        if (!best || left < best_left) {
            best = w;
            best_left = left;
        }
    }
    return best;
}

enum offer upstream_offer(struct upstream *u, const struct exchange *x, bool many_wait, ev_tstamp now)
{
    if (u->kind != UP_AWARE)
        return OFFER_OPEN;
    if (ready_worker(u, now))
        return OFFER_READY;
    /* Not while a new connection waits unclaimed: a worker may take that
     * one before the request behind its current one. */
    if (many_wait && !u->unknown && x->pipelinable && pipeline_worker(u, x->body.total, now))
        return OFFER_PIPELINE;
    if (u->unknown)
        return OFFER_NONE;      /* its outcome says more: wait for it */
    if (!u->n_workers || u->probe_after <= now)
        return OFFER_PROBE;
    upstream_kick_at(u, u->probe_after);
    return OFFER_NONE;
}

/* ---- connections ------------------------------------------------------ */

static void pool_push(struct upconn **head, struct upconn *c)
{
    c->pool_next = *head;
    if (*head)
        (*head)->pool_pprev = &c->pool_next;
    *head = c;
    c->pool_pprev = head;
}

/* Out of whichever pool holds C. */
static void pool_unlink(struct upconn *c)
{
    *c->pool_pprev = c->pool_next;
    if (c->pool_next)
        c->pool_next->pool_pprev = c->pool_pprev;
    c->pool_next = NULL;
    c->pool_pprev = NULL;
    if (c->w)
        c->w->n_idle--;
    else
        c->u->n_anon--;
    PM_DEC(up_idle);
}

static void close_upconn(struct upconn *c)
{
    struct upworker *w = c->w;

    ev_io_stop(srv.loop, &c->io);
    ev_timer_stop(srv.loop, &c->timer);
    upconn_forget(c);
    if (close(c->fd) < 0 && errno != EINTR)
        as_debug("close upstream: %s", strerror(errno));
    block_put(c->rbuf);
    free(c->head);
    free(c->hdr);
    free(c->pend);
    if (w) {
        if (--w->n_conns == 0)
            worker_forget(w);
        else
            worker_update(w);
    }
    upstream_put(c->u);
    free(c);
    PM_DEC(up_open);
}

/* A pooled connection became readable: the worker closed it (or sent
 * something unasked). Either way it is of no more use. */
void upstream_idle_event(struct upconn *c)
{
    struct upstream *u = upstream_ref(c->u);

    pool_unlink(c);
    close_upconn(c);
    balancer_kick(u);       /* its last worker may be gone: waiting requests need a new connection */
    upstream_put(u);
}

/* A worker that closed the idle connection we were about to use is
 * stopping (it closes all of them at once, each right after its last
 * answer) or dropping connections idle for its keep-alive time (the others
 * in its pool are older): none of its connections is pooled again, so
 * that a retry does not meet the next one it closed. The idle ones go when
 * U is released (upstream_release). */
void upstream_worker_closing(struct upconn *c)
{
    if (c->w)
        c->w->closing = true;
}

static struct upconn *connect_new(struct upstream *up)
{
    struct upconn *c;
    int fd = socket(up->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        as_err("upstream %s: socket: %s", up->name, strerror(errno));
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    c->fd = fd;
    c->u = upstream_ref(up);
    PM_INC(up_open);
    PM_INC(up_connects);
    upconn_init(c);
    if (connect(fd, (const struct sockaddr *)&up->addr.sa, up->addr.len) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            PM_INC(up_connect_errors);
            as_warn("upstream %s: connect: %s", up->name, strerror(e));
            close_upconn(c);
            errno = e;
            return NULL;
        }
        c->connecting = true;
    }
    return c;
}

struct upconn *upstream_take(struct upstream *u, enum offer offer, const struct exchange *x, ev_tstamp now)
{
    struct upconn *c;

    if (offer == OFFER_PIPELINE) {
        struct upworker *w = pipeline_worker(u, x->body.total, now);
        u->outstanding++;
        w->busy++;
        return w->current;
    }
    if (offer == OFFER_READY) {
        struct upworker *w = ready_worker(u, now);
        c = w->idle;
        pool_unlink(c);
        c->reused = true;       /* its read watcher stays on: no epoll_ctl */
        w->current = c;
    } else if (offer == OFFER_OPEN && u->anon) {
        c = u->anon;
        pool_unlink(c);
        c->reused = true;
    } else if (!(c = connect_new(u))) {
        return NULL;
    }
    u->outstanding++;
    if (c->w) {
        c->w->busy++;
        worker_update(c->w);
    } else {
        c->unknown = true;
        u->unknown++;
    }
    return c;
}

/* Whether C should rather be closed than pooled. */
static bool not_pooled(const struct upconn *c)
{
    const struct upstream *u = c->u;

    if (!u->listed)
        return true;    /* draining */
    if (c->w)
        return c->w->closing || c->w->n_idle >= c->w->capacity;   /* spare ones only cost descriptors */
    /* A worker that would not say is of no use where workers do. */
    return u->kind == UP_AWARE || u->n_anon >= UPSTREAM_POOL_MAX;
}

/* X's request on C is over, as far as the counts go. */
static void end_request(struct upconn *c, struct exchange *x, ev_tstamp now)
{
    struct upworker *w = c->w;

    if (x && x->slow_counted) {
        x->slow_counted = false;
        c->u->slow_busy--;
    }
    c->u->outstanding--;
    if (c->unknown) {
        c->unknown = false;
        c->u->unknown--;
    } else if (w && w->busy-- == w->capacity) {
        w->freed = now;
    }
}

static void began(struct exchange *x, ev_tstamp now)
{
    x->started = now;
    x->queue_wait = now - x->fwd_start;
}

void upstream_release(struct upconn *c, bool reusable)
{
    struct upstream *u = upstream_ref(c->u);     /* over the kick below */
    struct upworker *w = c->w;
    struct exchange *x = c->x, *next = c->pipe_head;
    ev_tstamp now = ev_now(srv.loop);

    if (reusable && x && x->started > 0)
        pathtime_learn(x->path_key, now - x->started);
    end_request(c, x, now);
    if (reusable)
        upstream_success(u);
    c->x = NULL;
    if (next && reusable && !c->close_after) {
        c->pipe_head = next->pipe_next;
        if (!c->pipe_head)
            c->pipe_tail = NULL;
        c->n_pipe--;
        c->x = next;            /* its response follows on this connection */
        began(next, now);
        balancer_kick(u);
        upstream_put(u);
        return;
    }
    /* The pipelined ones cannot follow: the worker never began them. */
    for (struct exchange *p = next; p; p = p->pipe_next) {
        end_request(c, p, now);
        p->up = NULL;
    }
    c->pipe_head = c->pipe_tail = NULL;
    c->n_pipe = 0;
    c->sending = false;
    ev_timer_stop(srv.loop, &c->timer);
    if (w && w->current == c)
        w->current = NULL;
    if (!reusable || c->close_after || not_pooled(c)) {
        /* A request that did not end well may still hold its worker (a
         * timeout, a client gone): the worker is no longer known to be
         * free, so its idle connections go, and with the last one what we
         * knew of it. */
        while (!reusable && w && w->idle && w->n_conns > 1) {
            struct upconn *idle = w->idle;
            pool_unlink(idle);
            close_upconn(idle);
        }
        close_upconn(c);
    } else {
        block_put(c->rbuf);
        c->rbuf = NULL;
        block_put(c->pipe_out);
        c->pipe_out = NULL;
        c->reused = false;
        pool_push(w ? &w->idle : &u->anon, c);
        PM_INC(up_idle);
        if (w) {
            w->n_idle++;
            worker_update(w);
        } else {
            u->n_anon++;
        }
        /* Readable while idle means the worker closed it. */
        if (!ev_is_active(&c->io) || (c->io.events & (EV_READ | EV_WRITE)) != EV_READ) {
            ev_io_stop(srv.loop, &c->io);
            ev_io_set(&c->io, c->fd, EV_READ);
            ev_io_start(srv.loop, &c->io);
        }
    }
    while (next) {
        struct exchange *p = next;
        next = p->pipe_next;
        forward_retry(p);
    }
    balancer_kick(u);
    upstream_put(u);
}

void upstream_unpipeline(struct upconn *c, struct exchange *x)
{
    struct exchange **p;

    for (p = &c->pipe_head; *p != x; p = &(*p)->pipe_next)
        ;
    *p = x->pipe_next;
    c->pipe_tail = NULL;
    for (struct exchange *q = c->pipe_head; q; q = q->pipe_next)
        c->pipe_tail = q;
    c->n_pipe--;
    x->up = NULL;
    end_request(c, x, ev_now(srv.loop));
    /* The worker will answer it anyway, in its turn: the connection ends
     * with the current response, and the ones after it go again. */
    c->close_after = true;
}

void upstream_identified(struct upconn *c, uint64_t token, int capacity)
{
    struct upstream *u = c->u;
    struct upworker *w;
    ev_tstamp now = ev_now(srv.loop);

    if (!c->unknown)
        return;
    c->unknown = false;
    u->unknown--;
    u->kind = UP_AWARE;
    w = worker_find(u, token);
    if (w) {
        /* A new connection found a worker we knew: there was no idle one
         * we did not know. It still takes connections: not stopping. */
        u->probe_after = now + UPSTREAM_PROBE_BACKOFF;
        w->closing = false;
    } else if ((w = calloc(1, sizeof *w))) {
        w->token = token;
        w->u = u;
        w->next = u->workers;
        u->workers = w;
        u->n_workers++;
    } else {
        balancer_kick(u);
        return;                 /* out of memory: the connection stays anonymous */
    }
    w->capacity = capacity;
    c->w = w;
    w->n_conns++;
    w->busy++;
    w->current = c;
    worker_update(w);
    if (c->x)
        began(c->x, now);
    balancer_kick(u);
}

void upstream_anonymous(struct upconn *c)
{
    struct upstream *u = c->u;

    if (!c->unknown)
        return;
    c->unknown = false;
    u->unknown--;
    /* Workers that stopped saying (a config change) must not leave the
     * upstream waiting for answers that never come. */
    if (u->kind == UP_UNKNOWN || !u->n_workers)
        u->kind = UP_PLAIN;
    balancer_kick(u);
}

static void close_idle(struct upstream *u)
{
    struct upworker *w, *next;

    while (u->anon) {
        struct upconn *c = u->anon;
        pool_unlink(c);
        close_upconn(c);
    }
    for (w = u->workers; w; w = next) {
        next = w->next;         /* closing its last connection frees W */
        while (w->idle) {
            struct upconn *c = w->idle;
            bool last = w->n_conns == 1;
            pool_unlink(c);
            close_upconn(c);
            if (last)
                break;
        }
    }
}

void upstream_drain_removed(void)
{
    struct upstream *u, *next;

    for (u = registry; u; u = next) {
        next = u->reg_next;
        if (!u->listed) {
            upstream_ref(u);
            close_idle(u);
            next = u->reg_next;
            upstream_put(u);
        }
    }
}

void upstream_close_all_idle(void)
{
    struct upstream *u, *next;

    for (u = registry; u; u = next) {
        upstream_ref(u);
        close_idle(u);
        next = u->reg_next;
        upstream_put(u);
    }
}

size_t upstream_listed(void)
{
    size_t n = 0;

    for (struct upstream *u = registry; u; u = u->reg_next)
        n += u->listed > 0;
    return n;
}

struct upstream *upstream_registry(void)
{
    return registry;
}
