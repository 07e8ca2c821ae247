/* Limits per client address, as nginx's limit_req and limit_conn:
 * requests per second with a burst (a leaky bucket: excess requests wait
 * their turn, or pass at once with nodelay, and are refused beyond the
 * burst), and requests at once. A limit belongs to [proxy] (every site),
 * a [site] or a [location]; the most specific one that sets limit_req
 * (or limit_conn) applies, and each has its own table of clients. Tables
 * hold at most limit_zone_size bytes: the client seen longest ago is
 * forgotten first (never one with requests in progress). The client is
 * the real one (realip.h); limit_allow names clients no limit applies to.
 * Refusals answer limit_req_status / limit_conn_status (429). */
#ifndef APPSTACK_PROXY_LIMIT_H
#define APPSTACK_PROXY_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"

struct exchange;
struct runtime;
struct location_rt;
struct lentry;

struct limit {
    struct as_limit cfg;
    /* the table: entries in an array, chained from hash buckets, and a
     * least-recently-used list for forgetting */
    struct lentry *e;
    uint32_t n, cap, max;
    uint32_t *bucket;
    uint32_t mask;
    uint32_t lru_head, lru_tail, free_head;
    /* refusals are logged at most once a second */
    double logged_at;
    uint64_t refused;
};

/* The limits of RT's config: [proxy]'s, each site's and each location's
 * (their `limit` pointers). */
void limits_build(struct runtime *rt);
void limits_free(struct runtime *rt);

enum limit_verdict { LIMIT_PASS, LIMIT_WAIT, LIMIT_REFUSED };
/* Applies the limits of LOC (or NULL: none of its own), its site and
 * [proxy] to X. LIMIT_WAIT: X goes on with exchange_dispatch once its
 * turn comes; LIMIT_REFUSED: X was answered. */
enum limit_verdict limit_check(struct exchange *x, const struct location_rt *loc);
/* From exchange_finish: the request no longer counts for limit_conn. */
void limit_release(struct exchange *x);
/* Clients in LIM's table (tests, metrics). */
uint32_t limit_clients(const struct limit *lim);

#endif
