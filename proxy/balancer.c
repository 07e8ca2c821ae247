/* For each forwarded request: an upstream and a connection to a worker
 * that is free, or a place in the balancer's queue until one is
 * (upstream.h; docs/proxy.md, "Dispatch").
 *
 * The choice: healthy upstreams first (then one a retry should avoid, then
 * any); among those, an idle connection to a free worker beats an upstream
 * whose workers do not identify, which beats a new connection; among equals
 * the one with the fewest requests in flight per known worker, ties taken
 * in turn. When every worker we know is busy the request waits here, in
 * order, and goes to the first worker that frees: a request never waits in
 * the connection of a busy worker while another worker is idle. One wait
 * beside an idle worker is on purpose: a request expected to be slow does
 * not take the last worker while short ones come, for up to
 * BALANCER_SLOW_HOLD (offer_for). */
#include "upstream.h"
#include "metrics.h"
#include "site.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Balancers with waiting requests: a worker that frees looks here. */
static struct balancer waiting = { .wprev = &waiting, .wnext = &waiting };
static size_t n_waiting;

static void qtimer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void unlink_waiting(struct balancer *b);

struct balancer *balancer_new(struct upstream **ups, size_t n)
{
    struct balancer *b = calloc(1, sizeof *b);

    if (!b)
        return NULL;
    b->ups = ups;
    b->n = n;
    for (size_t i = 0; i < n; i++)
        ups[i]->listed++;
    ev_init(&b->qtimer, qtimer_cb);
    return b;
}

struct balancer *balancer_build(const struct as_strlist *names)
{
    struct upstream **ups = calloc(names->n ? names->n : 1, sizeof *ups);
    struct balancer *b;
    char err[256];

    if (!ups)
        goto oom;
    for (size_t i = 0; i < names->n; i++)
        if (!(ups[i] = upstream_get(names->v[i], err, sizeof err)))
            goto oom;           /* the addresses were checked: only memory can fail */
    if ((b = balancer_new(ups, names->n)))
        return b;
oom:
    perror("appstack-proxy: out of memory");
    abort();
}

static bool lists(const struct balancer *b, const struct upstream *u)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->ups[i] == u)
            return true;
    return false;
}

static double queue_timeout(const struct exchange *x)
{
    return x->site->read_timeout;
}

static ev_tstamp deadline(const struct exchange *x)
{
    return x->queued_at + queue_timeout(x);
}

/* The first of B's queues to time out. */
static struct exchange *first_due(const struct balancer *b)
{
    struct exchange *f = b->q[0].head, *s = b->q[1].head;

    if (!f || (s && deadline(s) < deadline(f)))
        return s;
    return f;
}

static void arm_qtimer(struct balancer *b)
{
    struct exchange *x = first_due(b);

    ev_timer_stop(srv.loop, &b->qtimer);
    if (!x)
        return;
    ev_timer_set(&b->qtimer, deadline(x) - ev_now(srv.loop), 0);
    ev_timer_start(srv.loop, &b->qtimer);
}

static void link_waiting(struct balancer *b)
{
    b->wnext = &waiting;
    b->wprev = waiting.wprev;
    waiting.wprev->wnext = b;
    waiting.wprev = b;
}

static void enqueue(struct balancer *b, struct exchange *x, struct upstream *avoid)
{
    struct xqueue *q = &b->q[x->slow];

    x->q_bal = b;
    x->q_avoid = avoid;
    x->queued_at = ev_now(srv.loop);
    x->q_next = NULL;
    x->q_prev = q->tail;
    if (q->tail)
        q->tail->q_next = x;
    else
        q->head = x;
    q->tail = x;
    n_waiting++;
    PM_INC(up_queued);
    if (b->qlen++ == 0)
        link_waiting(b);
    if (b->qlen == 1 || x == first_due(b))
        arm_qtimer(b);
}

static void dequeue(struct exchange *x)
{
    struct balancer *b = x->q_bal;
    struct xqueue *q = &b->q[x->slow];
    bool was_due = x == first_due(b);

    if (x->q_prev)
        x->q_prev->q_next = x->q_next;
    else
        q->head = x->q_next;
    if (x->q_next)
        x->q_next->q_prev = x->q_prev;
    else
        q->tail = x->q_prev;
    x->q_next = x->q_prev = NULL;
    x->q_bal = NULL;
    n_waiting--;
    PM_DEC(up_queued);
    if (--b->qlen == 0)
        unlink_waiting(b);
    else if (was_due)
        arm_qtimer(b);
}

void balancer_cancel(struct exchange *x)
{
    if (x->q_bal)
        dequeue(x);
}

size_t balancer_waiting(void)
{
    return n_waiting;
}

/* Waited as long as a response may take to begin: 504, like a request that
 * waited in a worker's backlog that long. */
static void qtimer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct balancer *b = (struct balancer *)((char *)w - offsetof(struct balancer, qtimer));
    ev_tstamp now = ev_now(loop);
    struct exchange *x;

    while ((x = first_due(b)) && deadline(x) <= now + 1e-3) {
        dequeue(x);
        x->queue_wait = now - x->fwd_start;
        as_warn("%s %.*s: no worker free within %gs", x->req->method, (int)x->req->target_len, x->req->target,
                queue_timeout(x));
        forward_fail(x, 504);
    }
    if (b->qlen)
        arm_qtimer(b);
}

static void set_upstream(struct exchange *x, struct upstream *u)
{
    if (x->upstream == u)
        return;
    upstream_put(x->upstream);
    x->upstream = upstream_ref(u);
}

/* X goes out on C, as OFFER said. */
static void dispatch(struct exchange *x, struct upconn *c, enum offer offer)
{
    set_upstream(x, c->u);
    if (x->tries++ > 0)
        PM_INC(up_retries);
    if (x->slow) {
        c->u->slow_busy++;     /* upstream_release counts it out */
        x->slow_counted = true;
    }
    if (offer == OFFER_PIPELINE) {
        x->started = 0;         /* when the one before it ends */
        upconn_pipeline(c, x);
        return;
    }
    /* A connection whose worker has not said yet tells when it begins. */
    x->started = ev_now(srv.loop);
    x->queue_wait = x->started - x->fwd_start;
    upconn_start(c, x);
}

/* Fewer requests in flight per worker known (per upstream when none is). */
static bool lighter(const struct upstream *a, const struct upstream *b)
{
    long wa = a->n_workers > 1 ? a->n_workers : 1, wb = b->n_workers > 1 ? b->n_workers : 1;

    return (long)a->outstanding * wb < (long)b->outstanding * wa;
}

/* At least one waiting request per worker known behind B's upstreams. */
static bool many_wait(const struct balancer *b)
{
    size_t workers = 0;

    for (size_t i = 0; i < b->n; i++)
        workers += (size_t)b->ups[i]->n_workers;
    return b->qlen >= (workers ? workers : 1);
}

/* What U offers X now. A request expected to be slow does not take the
 * last worker we know of while short requests come, nor a new connection
 * (it could reach the last idle worker) while we know of any: a 1 ms
 * request must not find every worker busy for 200 ms. Slow ones still have
 * all the other workers (and the only one, when we know of one; a new
 * connection when we know of none, as after a reload), so they wait but
 * are never starved; when no short request came in the last second nothing
 * is held back. Nor is one held back beside an idle worker for more than
 * BALANCER_SLOW_HOLD while no short one waits: when slow requests come
 * faster than the other workers serve them, a worker kept for short ones
 * that do not come is lost to everyone, and the slow ones would pile up
 * without end (clients that send one request at a time then send no short
 * ones either). */
static enum offer offer_for(const struct balancer *b, struct upstream *u, const struct exchange *x, ev_tstamp now)
{
    enum offer o = upstream_offer(u, x, many_wait(b), now);
    ev_tstamp until;

    if (!x->slow || u->kind != UP_AWARE || !u->n_workers || now - b->last_fast > BALANCER_FAST_RECENT)
        return o;
    if (o == OFFER_PROBE)
        return OFFER_NONE;
    if (u->slow_busy < (u->n_workers > 1 ? u->n_workers - 1 : 1))
        return o;
    if (o != OFFER_READY || b->q[0].head)
        return OFFER_NONE;
    until = (x->q_bal ? x->queued_at : now) + BALANCER_SLOW_HOLD;
    if (now + 1e-3 >= until)    /* a timer may fire a hair early */
        return o;
    upstream_kick_at(u, until);
    return OFFER_NONE;
}

bool balancer_other(const struct balancer *b, const struct upstream *u, ev_tstamp now)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->ups[i] != u && b->ups[i]->listed && upstream_healthy(b->ups[i], now))
            return true;
    return false;
}

/* 0: healthy and listed; 1: the one a retry avoids; 2: down or removed. */
static int tier(const struct balancer *b, const struct upstream *u, const struct upstream *avoid, ev_tstamp now)
{
    if (!upstream_healthy(u, now) || !u->listed)
        return 2;
    return u == avoid && b->n > 1 ? 1 : 0;
}

/* The best upstream of the best tier that has any, and what it offers;
 * NULL when every one of that tier is busy (the request waits). */
static struct upstream *choose(struct balancer *b, const struct exchange *x, struct upstream *avoid,
                               enum offer *offer)
{
    ev_tstamp now = ev_now(srv.loop);

    for (int t = 0; t <= 2; t++) {
        struct upstream *best = NULL;
        enum offer best_o = OFFER_NONE;
        size_t best_i = 0;
        bool any = false;
        for (size_t k = 0; k < b->n; k++) {
            size_t i = (b->rr + k) % b->n;
            struct upstream *u = b->ups[i];
            enum offer o;
            if (tier(b, u, avoid, now) != t)
                continue;
            any = true;
            o = offer_for(b, u, x, now);
            if (o != OFFER_NONE && (o > best_o || (o == best_o && lighter(u, best)))) {
                best = u;
                best_o = o;
                best_i = i;
            }
        }
        if (best) {
            b->rr = best_i + 1;
            *offer = best_o;
            return best;
        }
        if (any)
            return NULL;
    }
    return NULL;
}

/* Tries every upstream U could be kicked for: the waiting requests, oldest
 * first. */
static void kick_all(struct balancer *b)
{
    for (size_t i = 0; i < b->n && b->qlen; i++)
        balancer_kick(b->ups[i]);
}

void balancer_submit(struct balancer *b, struct exchange *x, struct upstream *avoid)
{
    if (!x->slow)
        b->last_fast = ev_now(srv.loop);
    /* Requests that wait go first: a new one queues behind them. */
    if (b->qlen) {
        enqueue(b, x, avoid);
        kick_all(b);
        return;
    }
    for (size_t tries = 0;; tries++) {
        enum offer offer;
        struct upstream *u = choose(b, x, avoid, &offer);
        struct upconn *c;
        if (!u) {
            enqueue(b, x, avoid);
            return;
        }
        c = upstream_take(u, offer, x, ev_now(srv.loop));
        if (c) {
            dispatch(x, c, offer);
            return;
        }
        /* A full backlog (EAGAIN) is no reason to think the upstream down. */
        if (errno != EAGAIN)
            upstream_fault(u, "cannot connect");
        set_upstream(x, u);
        if (tries >= b->n) {
            forward_fail(x, 502);
            return;
        }
        avoid = u;
    }
}

/* The oldest waiting request that may go to U now, and how. */
static struct exchange *oldest_for(struct upstream *u, ev_tstamp now, enum offer *offer)
{
    struct exchange *best = NULL;

    for (struct balancer *b = waiting.wnext; b != &waiting; b = b->wnext) {
        if (!lists(b, u))
            continue;
        for (int k = 0; k < 2; k++) {
            struct exchange *x;
            enum offer o;
            for (x = b->q[k].head; x; x = x->q_next)
                if (x->q_avoid != u || b->n == 1)
                    break;
            if (!x || (best && x->queued_at >= best->queued_at))
                continue;
            if ((o = offer_for(b, u, x, now)) != OFFER_NONE) {
                best = x;
                *offer = o;
            }
        }
    }
    return best;
}

void balancer_kick(struct upstream *u)
{
    if (!n_waiting)
        return;
    /* Re-entered from a dispatch that failed at once: the loop below goes
     * round again instead. */
    if (u->kicking) {
        u->kick_again = true;
        return;
    }
    u->kicking = true;
    upstream_ref(u);
    do {
        u->kick_again = false;
        for (;;) {
            ev_tstamp now = ev_now(srv.loop);
            enum offer offer = OFFER_NONE;
            struct exchange *x = upstream_healthy(u, now) ? oldest_for(u, now, &offer) : NULL;
            struct balancer *b;
            struct upconn *c;
            if (!x)
                break;
            b = x->q_bal;
            dequeue(x);
            c = upstream_take(u, offer, x, now);
            if (!c) {
                if (errno != EAGAIN)
                    upstream_fault(u, "cannot connect");
                set_upstream(x, u);
                balancer_submit(b, x, u);   /* elsewhere, or 502 */
                break;
            }
            dispatch(x, c, offer);
        }
    } while (u->kick_again);
    u->kicking = false;
    upstream_put(u);
}

static void unlink_waiting(struct balancer *b)
{
    b->wprev->wnext = b->wnext;
    b->wnext->wprev = b->wprev;
    b->wnext = b->wprev = NULL;
    ev_timer_stop(srv.loop, &b->qtimer);
}

void balancer_retire(struct balancer *b, struct balancer *heir)
{
    if (b->retired)
        return;
    b->retired = true;
    if (heir && b->qlen) {
        /* They waited longer than anything the heir has: in front. */
        for (int k = 0; k < 2; k++) {
            struct xqueue *from = &b->q[k], *to = &heir->q[k];
            if (!from->head)
                continue;
            for (struct exchange *x = from->head; x; x = x->q_next)
                x->q_bal = heir;
            from->tail->q_next = to->head;
            if (to->head)
                to->head->q_prev = from->tail;
            else
                to->tail = from->tail;
            to->head = from->head;
            from->head = from->tail = NULL;
        }
        unlink_waiting(b);
        if (heir->qlen == 0)
            link_waiting(heir);
        heir->qlen += b->qlen;
        b->qlen = 0;
        arm_qtimer(heir);
    }
    for (size_t i = 0; i < b->n; i++)
        b->ups[i]->listed--;
    upstream_drain_removed();
    if (heir)
        kick_all(heir);
}

void balancer_free(struct balancer *b)
{
    if (!b)
        return;
    balancer_retire(b, NULL);
    /* Exchanges hold their runtime, and with it this balancer: none waits. */
    for (size_t i = 0; i < b->n; i++)
        upstream_put(b->ups[i]);
    free(b->ups);
    free(b);
}
