/* The proxy's counters for /metrics (metrics = ADDR in [proxy]).
 *
 * Counting costs an add to plain memory on the request path: no lock, no
 * atomic, no syscall. The counters of one process are one struct
 * pm_counters; the structs of all proxy processes live side by side in one
 * shared mapping (pm_init), each process writes only its own (pm), and a
 * scrape, answered by whichever process takes it, sums them all. A reader
 * may see a counter a few requests behind, never a torn one (aligned
 * 64-bit stores). The struct holds no pointers, so it can live there.
 *
 * Hooks for the parts of the proxy that count: PM_ADD / PM_INC anywhere,
 * pm_exchange_done() at the end of an exchange, pm_upstream_wait() when an
 * upstream's response head arrives. */
#ifndef APPSTACK_PROXY_METRICS_H
#define APPSTACK_PROXY_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct exchange;

/* Where an answer came from: a static alias, an upstream, or the proxy
 * itself before routing (malformed, too large, timed out, refused,
 * redirected to https). */
enum pm_kind { PM_STATIC, PM_UPSTREAM, PM_PROXY, PM_KINDS };
enum pm_method { PM_GET, PM_HEAD, PM_POST, PM_PUT, PM_PATCH, PM_DELETE, PM_OPTIONS, PM_OTHER, PM_METHODS };
#define PM_STATUS_CLASSES 5     /* 1xx .. 5xx */
#define PM_BOUNDS 15            /* histogram buckets: PM_BOUNDS bounds + one beyond */

struct pm_counters {
    /* answered requests (the whole response went out) */
    uint64_t requests[PM_KINDS][PM_METHODS][PM_STATUS_CLASSES];
    uint64_t duration[PM_KINDS][PM_BOUNDS + 1];    /* first byte to last byte sent */
    uint64_t duration_usec[PM_KINDS];
    uint64_t upstream_wait[PM_BOUNDS + 1];           /* request read to upstream head */
    uint64_t upstream_wait_usec;
    uint64_t aborted;               /* ended before the whole response went out */
    uint64_t bytes_in, bytes_out;   /* client side, as sent on the wire (HTTP/1) */
    /* client connections */
    uint64_t accepted, refused;     /* refused: over max_connections (503) */
    int64_t open, active;           /* gauges; idle = open - active (pm_forget zeroes every gauge) */
    /* upstream connections */
    uint64_t up_connects, up_connect_errors, up_retries, up_marked_down;
    int64_t up_open, up_idle;       /* gauges */
    int64_t up_queued;              /* gauge: requests waiting for an upstream */
    /* seams for the protocols that terminate TLS and HTTP/2 */
    uint64_t tls_handshakes, tls_handshake_errors;
    uint64_t h2_streams;
};

extern struct pm_counters *pm;

#define PM_INC(field) (pm->field++)
#define PM_DEC(field) (pm->field--)
#define PM_ADD(field, n) (pm->field += (n))

/* The shared mapping for PROCESSES processes; this process counts in the
 * first one until pm_use() says otherwise. False when mmap fails. */
bool pm_init(int processes);
/* Before forking the process that will count in struct number I: scrapes
 * add it up from now on. */
void pm_claim(int i);
/* After fork: this process counts in struct number I. */
void pm_use(int i);
/* The process that counted in struct I is gone: its gauges (connections
 * it held) are zeroed, its counters stay in the sums (they only grow), and
 * the process that takes struct I over counts on from there. */
void pm_forget(int i);
/* Every process's counters added up, and the requests answered in them. */
void pm_sum(struct pm_counters *t);
uint64_t pm_answered(const struct pm_counters *t);

/* The exchange ends (COMPLETED: its whole response went out) after USEC. */
void pm_exchange_done(const struct exchange *x, bool completed, uint64_t usec);
/* The upstream's response head arrived USEC after the request was read. */
void pm_upstream_wait(uint64_t usec);

/* metrics = ADDR of the config the proxy started with; false when it
 * cannot be opened (logged). */
bool pm_server_open(void);
void pm_server_close(void);
/* Whether this process takes scrapes from the metrics listen (which all
 * proxy processes share): the master and retiring processes do not. */
void pm_server_serve(bool on);
/* HUP: the listen stays as it was; a change is said. */
void pm_server_reloaded(const char *new_addr);

#endif
