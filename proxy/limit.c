/* limit_req and limit_conn (see limit.h). */
#include "limit.h"
#include "exchange.h"
#include "site.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "netmask.h"
#include "xalloc.h"

#define NIL UINT32_MAX
#define FIRST_CAP 1024
#define EVICT_SCAN 32           /* entries looked at from the LRU end for one to forget */

struct lentry {
    unsigned char addr[16];     /* IPv6, or IPv4-mapped */
    uint32_t hnext;             /* hash chain, or the free list */
    uint32_t prev, next;        /* LRU list: head = most recent */
    uint32_t conns;             /* requests in progress (limit_conn) */
    double excess;              /* requests over the rate, in thousandths (limit_req) */
    double last;                /* when excess was computed */
};

static uint32_t hash16(const unsigned char *a)
{
    uint32_t h = 2166136261u;

    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 16777619u;
    return h;
}

static void lru_unlink(struct limit *l, uint32_t i)
{
    struct lentry *e = &l->e[i];

    if (e->prev != NIL)
        l->e[e->prev].next = e->next;
    else
        l->lru_head = e->next;
    if (e->next != NIL)
        l->e[e->next].prev = e->prev;
    else
        l->lru_tail = e->prev;
}

static void lru_front(struct limit *l, uint32_t i)
{
    struct lentry *e = &l->e[i];

    e->prev = NIL;
    e->next = l->lru_head;
    if (l->lru_head != NIL)
        l->e[l->lru_head].prev = i;
    l->lru_head = i;
    if (l->lru_tail == NIL)
        l->lru_tail = i;
}

static void rehash(struct limit *l, uint32_t buckets)
{
    free(l->bucket);
    l->bucket = as_xcalloc(buckets, sizeof *l->bucket);
    memset(l->bucket, 0xff, buckets * sizeof *l->bucket);
    l->mask = buckets - 1;
    for (uint32_t i = l->lru_head; i != NIL; i = l->e[i].next) {
        uint32_t b = hash16(l->e[i].addr) & l->mask;
        l->e[i].hnext = l->bucket[b];
        l->bucket[b] = i;
    }
}

static void unchain(struct limit *l, uint32_t i)
{
    uint32_t *p = &l->bucket[hash16(l->e[i].addr) & l->mask];

    while (*p != i)
        p = &l->e[*p].hnext;
    *p = l->e[i].hnext;
}

/* A slot for a new client: a free one, a new one while the table may
 * grow, else the least recently seen client without requests in
 * progress. NIL when none can go. */
static uint32_t new_slot(struct limit *l)
{
    uint32_t i;

    if (l->free_head != NIL) {
        i = l->free_head;
        l->free_head = l->e[i].hnext;
        return i;
    }
    if (l->n == l->cap && l->cap < l->max) {
        uint32_t cap = l->cap ? l->cap * 2 : FIRST_CAP;
        struct lentry *e;
        if (cap > l->max)
            cap = l->max;
        if (!(e = realloc(l->e, (size_t)cap * sizeof *e)))
            return NIL;
        l->e = e;
        l->cap = cap;
        uint32_t buckets = 1;
        while (buckets < 2 * cap)
            buckets <<= 1;      /* at most half full; a power of two for the mask */
        rehash(l, buckets);
    }
    if (l->n < l->cap)
        return l->n++;
    i = l->lru_tail;
    for (int k = 0; i != NIL && k < EVICT_SCAN; k++, i = l->e[i].prev) {
        if (!l->e[i].conns) {
            unchain(l, i);
            lru_unlink(l, i);
            return i;
        }
    }
    return NIL;
}

/* The client's entry, made if new; NIL when the table is full of clients
 * with requests in progress. */
static uint32_t lookup(struct limit *l, const unsigned char *addr)
{
    uint32_t b, i;

    if (l->mask || l->bucket) {
        b = hash16(addr) & l->mask;
        for (i = l->bucket[b]; i != NIL; i = l->e[i].hnext) {
            if (!memcmp(l->e[i].addr, addr, 16)) {
                lru_unlink(l, i);
                lru_front(l, i);
                return i;
            }
        }
    }
    if ((i = new_slot(l)) == NIL)
        return NIL;
    memset(&l->e[i], 0, sizeof l->e[i]);
    memcpy(l->e[i].addr, addr, 16);
    b = hash16(addr) & l->mask;
    l->e[i].hnext = l->bucket[b];
    l->bucket[b] = i;
    lru_front(l, i);
    return i;
}

static void limit_init(struct limit *l, const struct as_limit *cfg, size_t zone)
{
    memset(l, 0, sizeof *l);
    l->cfg = *cfg;
    l->max = (uint32_t)(zone / (sizeof(struct lentry) + 2 * sizeof(uint32_t)));
    if (l->max < 16)
        l->max = 16;
    l->lru_head = l->lru_tail = l->free_head = NIL;
}

static struct limit *limit_of(struct runtime *rt, size_t *k, const struct as_limit *cfg)
{
    if (!cfg->rate && !cfg->conn)
        return NULL;
    limit_init(&rt->lims[*k], cfg, rt->cfg.limit_zone_size);
    return &rt->lims[(*k)++];
}

void limits_build(struct runtime *rt)
{
    const struct as_config *c = &rt->cfg;
    size_t n = 1 + rt->n_sites + rt->n_locs, k = 0;

    rt->lims = as_xcalloc(n, sizeof *rt->lims);
    rt->limit_proxy = limit_of(rt, &k, &c->limit);
    for (size_t i = 0; i < rt->n_sites; i++)
        rt->sites[i].limit = rt->sites[i].cfg ? limit_of(rt, &k, &rt->sites[i].cfg->limit) : NULL;
    for (size_t i = 0; i < rt->n_locs; i++)
        rt->locs[i].limit = limit_of(rt, &k, rt->locs[i].limit_cfg);
    rt->n_limits = k;
    for (size_t i = 0; i < c->limit_allow.n; i++) {
        char *copy = strdup(c->limit_allow.v[i]), *save = NULL;
        if (!copy)
            abort();
        for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            struct as_net net;
            if (!as_net_parse(t, &net))
                continue;
            struct as_net *v = realloc(rt->limit_allow, (rt->n_limit_allow + 1) * sizeof *v);
            if (!v)
                abort();
            rt->limit_allow = v;
            rt->limit_allow[rt->n_limit_allow++] = net;
        }
        free(copy);
    }
}

void limits_free(struct runtime *rt)
{
    for (size_t i = 0; i < rt->n_limits; i++) {
        free(rt->lims[i].e);
        free(rt->lims[i].bucket);
    }
    free(rt->lims);
    free(rt->limit_allow);
}

uint32_t limit_clients(const struct limit *lim)
{
    return lim ? lim->n : 0;
}

/* "10.1.2.3" or "2001:db8::1" as 16 bytes (IPv4 mapped); false for "unix". */
static bool client_key(const char *text, unsigned char out[16])
{
    unsigned char a4[4];

    if (inet_pton(AF_INET6, text, out) == 1)
        return true;
    if (inet_pton(AF_INET, text, a4) != 1)
        return false;
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, a4, 4);
    return true;
}

static void log_refusal(struct limit *l, const struct exchange *x, const char *what)
{
    double now = ev_now(srv.loop);

    l->refused++;
    if (now - l->logged_at < 1.0)
        return;
    as_warn("%s: %llu request%s refused, the last from %s for %s %.*s", what, (unsigned long long)l->refused,
            l->refused == 1 ? "" : "s", x->client, x->req->method, (int)x->req->target_len, x->req->target);
    l->logged_at = now;
    l->refused = 0;
}

static void wait_done(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct exchange *x = (struct exchange *)((char *)w - offsetof(struct exchange, limit_wait));

    exchange_dispatch(x);
}

enum limit_verdict limit_check(struct exchange *x, const struct location_rt *loc)
{
    struct runtime *rt = x->rt;
    struct site *site = x->site;
    struct limit *req = NULL, *conn = NULL;
    struct limit *chain[3] = { loc ? loc->limit : NULL, site->limit, rt->limit_proxy };
    unsigned char key[16];
    uint32_t i;

    if (x->limits_done)
        return LIMIT_PASS;
    x->limits_done = true;
    for (int k = 0; k < 3; k++) {
        if (!req && chain[k] && chain[k]->cfg.rate)
            req = chain[k];
        if (!conn && chain[k] && chain[k]->cfg.conn)
            conn = chain[k];
    }
    if ((!req && !conn) || !client_key(x->client, key) ||
        (rt->n_limit_allow && as_nets_match_text(rt->limit_allow, rt->n_limit_allow, x->client, strlen(x->client))))
        return LIMIT_PASS;
    if (conn) {
        i = lookup(conn, key);
        if (i == NIL || conn->e[i].conns >= (uint32_t)conn->cfg.conn) {
            log_refusal(conn, x, i == NIL ? "limit_conn (table full)" : "limit_conn");
            exchange_error(x, (int)rt->cfg.limit_conn_status, false);
            return LIMIT_REFUSED;
        }
        conn->e[i].conns++;
        x->limit_conn = conn;
        x->limit_conn_i = i;
    }
    if (req) {
        double now = ev_now(srv.loop), excess;
        i = lookup(req, key);
        if (i == NIL) {
            log_refusal(req, x, "limit_req (table full)");
            exchange_error(x, (int)rt->cfg.limit_req_status, false);
            return LIMIT_REFUSED;
        }
        struct lentry *e = &req->e[i];
        if (e->last == 0) {
            excess = 0;         /* a new client */
        } else {
            excess = e->excess - req->cfg.rate * (now - e->last) * 1000 + 1000;
            if (excess < 0)
                excess = 0;
        }
        if (excess > (double)req->cfg.burst * 1000) {
            log_refusal(req, x, "limit_req");
            exchange_error(x, (int)rt->cfg.limit_req_status, false);
            return LIMIT_REFUSED;
        }
        e->excess = excess;
        e->last = now;
        if (excess > 0 && !req->cfg.nodelay) {
            /* its turn: when the bucket has leaked the excess */
            ev_timer_init(&x->limit_wait, wait_done, excess / 1000 / req->cfg.rate, 0);
            ev_timer_start(srv.loop, &x->limit_wait);
            return LIMIT_WAIT;
        }
    }
    return LIMIT_PASS;
}

void limit_release(struct exchange *x)
{
    if (ev_is_active(&x->limit_wait))
        ev_timer_stop(srv.loop, &x->limit_wait);
    if (x->limit_conn) {
        x->limit_conn->e[x->limit_conn_i].conns--;
        x->limit_conn = NULL;
    }
    x->limits_done = false;
}
