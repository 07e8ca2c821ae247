/* The proxy's counters (metrics.h) and its /metrics and /healthz answers. */
#include "metrics.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "upstream.h"
#include "metrics_server.h"

static struct pm_counters fallback;     /* before pm_init, or without shared memory */
struct pm_counters *pm = &fallback;

/* The shared mapping: how many structs are in use (scrapes add up those),
 * then the structs. Slots are claimed by the master before a fork, so it is
 * the one writer of `used`. */
struct pm_shared {
    uint64_t used;
    struct pm_counters all[];
};

static struct {
    struct pm_shared *sh;
    int n;
    struct metrics_server server;
} pmx = { .server = { .fd = -1 } };

/* Microseconds: 1 ms to 60 s, the range a page view lives in. */
static const uint64_t bounds[PM_BOUNDS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

static const char *const kind_names[PM_KINDS] = { "static", "upstream", "proxy" };
static const char *const method_names[PM_METHODS] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
};

bool pm_init(int processes)
{
    void *p = mmap(NULL, sizeof *pmx.sh + (size_t)processes * sizeof *pmx.sh->all, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return false;
    pmx.sh = p;
    pmx.n = processes;
    pmx.sh->all[0] = *pm;   /* what was counted before */
    pmx.sh->used = 1;
    pm = &pmx.sh->all[0];
    return true;
}

void pm_claim(int i)
{
    if (pmx.sh && i >= 0 && i < pmx.n && (uint64_t)i >= pmx.sh->used)
        pmx.sh->used = (uint64_t)i + 1;
}

void pm_use(int i)
{
    if (pmx.sh && i >= 0 && i < pmx.n)
        pm = &pmx.sh->all[i];
}

void pm_forget(int i)
{
    struct pm_counters *c;

    if (!pmx.sh || i < 0 || i >= pmx.n)
        return;
    c = &pmx.sh->all[i];
    c->open = c->active = 0;
    c->up_open = c->up_idle = c->up_queued = 0;
}

static int bucket(uint64_t usec)
{
    int i = 0;

    while (i < PM_BOUNDS && usec > bounds[i])
        i++;
    return i;
}

static enum pm_method method_class(const char *m)
{
    switch (m[0]) {
    case 'G': return !strcmp(m, "GET") ? PM_GET : PM_OTHER;
    case 'H': return !strcmp(m, "HEAD") ? PM_HEAD : PM_OTHER;
    case 'P':
        if (!strcmp(m, "POST"))
            return PM_POST;
        if (!strcmp(m, "PUT"))
            return PM_PUT;
        return !strcmp(m, "PATCH") ? PM_PATCH : PM_OTHER;
    case 'D': return !strcmp(m, "DELETE") ? PM_DELETE : PM_OTHER;
    case 'O': return !strcmp(m, "OPTIONS") ? PM_OPTIONS : PM_OTHER;
    default: return PM_OTHER;
    }
}

void pm_exchange_done(const struct exchange *x, bool completed, uint64_t usec)
{
    const struct as_http_request *r = x->req;
    enum pm_kind kind = x->static_req ? PM_STATIC : x->tries > 0 ? PM_UPSTREAM : PM_PROXY;
    int sc = x->status / 100 - 1;

    pm->bytes_out += x->out.sent;
    if (!completed) {
        pm->aborted++;
        return;
    }
    if (sc < 0 || sc >= PM_STATUS_CLASSES)
        sc = PM_STATUS_CLASSES - 1;
    pm->requests[kind][r && r->method && r->state != AS_HTTP_HEAD ? method_class(r->method) : PM_OTHER][sc]++;
    pm->duration[kind][bucket(usec)]++;
    pm->duration_usec[kind] += usec;
}

void pm_upstream_wait(uint64_t usec)
{
    pm->upstream_wait[bucket(usec)]++;
    pm->upstream_wait_usec += usec;
}

void pm_sum(struct pm_counters *t)
{
    const uint64_t *src;
    uint64_t *dst = (uint64_t *)t;
    size_t n = sizeof *t / sizeof(uint64_t);

    if (!pmx.sh) {
        *t = *pm;
        return;
    }
    memset(t, 0, sizeof *t);
    for (uint64_t k = 0; k < pmx.sh->used && k < (uint64_t)pmx.n; k++) {
        src = (const uint64_t *)&pmx.sh->all[k];
        for (size_t i = 0; i < n; i++)
            dst[i] += src[i];   /* gauges are int64_t: two's complement adds alike */
    }
}

uint64_t pm_answered(const struct pm_counters *t)
{
    uint64_t n = 0;

    for (int k = 0; k < PM_KINDS; k++)
        for (int m = 0; m < PM_METHODS; m++)
            for (int s = 0; s < PM_STATUS_CLASSES; s++)
                n += t->requests[k][m][s];
    return n;
}

static void requests_text(const struct pm_counters *t, struct prom *p)
{
    static const char *const classes[PM_STATUS_CLASSES] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
    char labels[96];

    prom_family(p, "appstack_proxy_requests_total", "counter",
                "Requests answered in full, by where the answer came from (kind), method and status class.");
    for (int k = 0; k < PM_KINDS; k++)
        for (int m = 0; m < PM_METHODS; m++)
            for (int s = 0; s < PM_STATUS_CLASSES; s++)
                if (t->requests[k][m][s]) {
                    snprintf(labels, sizeof labels, "kind=\"%s\",method=\"%s\",status=\"%s\"", kind_names[k],
                             method_names[m], classes[s]);
                    prom_u64(p, "appstack_proxy_requests_total", labels, t->requests[k][m][s]);
                }
    prom_family(p, "appstack_proxy_requests_aborted_total", "counter",
                "Requests whose response could not be completed (the client left, or the upstream broke mid-body).");
    prom_u64(p, "appstack_proxy_requests_aborted_total", NULL, t->aborted);
    prom_family(p, "appstack_proxy_request_duration_seconds", "histogram",
                "Time from a request's first byte to the last byte of its response, by kind.");
    for (int k = 0; k < PM_KINDS; k++) {
        snprintf(labels, sizeof labels, "kind=\"%s\"", kind_names[k]);
        prom_histogram_usec(p, "appstack_proxy_request_duration_seconds", labels, t->duration[k], bounds, PM_BOUNDS,
                            t->duration_usec[k]);
    }
    prom_family(p, "appstack_proxy_upstream_wait_seconds", "histogram",
                "Time from a request being read whole to its upstream response head (retries included).");
    prom_histogram_usec(p, "appstack_proxy_upstream_wait_seconds", NULL, t->upstream_wait, bounds, PM_BOUNDS,
                        t->upstream_wait_usec);
    prom_family(p, "appstack_proxy_received_bytes_total", "counter", "Bytes read from clients.");
    prom_u64(p, "appstack_proxy_received_bytes_total", NULL, t->bytes_in);
    prom_family(p, "appstack_proxy_sent_bytes_total", "counter", "Bytes sent to clients.");
    prom_u64(p, "appstack_proxy_sent_bytes_total", NULL, t->bytes_out);
}

static uint64_t gauge(int64_t v)
{
    return v > 0 ? (uint64_t)v : 0;
}

static void connections_text(const struct pm_counters *t, struct prom *p)
{
    prom_family(p, "appstack_proxy_connections", "gauge",
                "Open client connections: active (a request in progress) or idle (keep-alive, between requests).");
    prom_u64(p, "appstack_proxy_connections", "state=\"active\"", gauge(t->active));
    prom_u64(p, "appstack_proxy_connections", "state=\"idle\"", gauge(t->open - t->active));
    prom_family(p, "appstack_proxy_connections_accepted_total", "counter", "Client connections accepted.");
    prom_u64(p, "appstack_proxy_connections_accepted_total", NULL, t->accepted);
    prom_family(p, "appstack_proxy_connections_refused_total", "counter",
                "Client connections answered 503 and closed: max_connections were open.");
    prom_u64(p, "appstack_proxy_connections_refused_total", NULL, t->refused);
    prom_family(p, "appstack_proxy_tls_handshakes_total", "counter", "TLS handshakes by result.");
    prom_u64(p, "appstack_proxy_tls_handshakes_total", "result=\"ok\"", t->tls_handshakes);
    prom_u64(p, "appstack_proxy_tls_handshakes_total", "result=\"failed\"", t->tls_handshake_errors);
    prom_family(p, "appstack_proxy_http2_streams_total", "counter", "HTTP/2 streams opened by clients.");
    prom_u64(p, "appstack_proxy_http2_streams_total", NULL, t->h2_streams);
}

static void upstream_text(const struct pm_counters *t, struct prom *p)
{
    ev_tstamp now = ev_now(srv.loop);
    char labels[300], esc[256];

    prom_family(p, "appstack_proxy_upstream_connections", "gauge",
                "Connections to upstreams: active (carrying a request) or idle (in the keep-alive pool).");
    prom_u64(p, "appstack_proxy_upstream_connections", "state=\"active\"", gauge(t->up_open - t->up_idle));
    prom_u64(p, "appstack_proxy_upstream_connections", "state=\"idle\"", gauge(t->up_idle));
    prom_family(p, "appstack_proxy_upstream_connects_total", "counter", "New connections to upstreams, by result.");
    prom_u64(p, "appstack_proxy_upstream_connects_total", "result=\"ok\"", t->up_connects - t->up_connect_errors);
    prom_u64(p, "appstack_proxy_upstream_connects_total", "result=\"failed\"", t->up_connect_errors);
    prom_family(p, "appstack_proxy_upstream_retries_total", "counter",
                "Requests sent again to an upstream after a failed attempt.");
    prom_u64(p, "appstack_proxy_upstream_retries_total", NULL, t->up_retries);
    prom_family(p, "appstack_proxy_upstream_failures_total", "counter",
                "Times an upstream was marked failed (skipped for a while).");
    prom_u64(p, "appstack_proxy_upstream_failures_total", NULL, t->up_marked_down);
    prom_family(p, "appstack_proxy_upstream_queue", "gauge", "Requests waiting in the proxy for a free worker.");
    prom_u64(p, "appstack_proxy_upstream_queue", NULL, gauge(t->up_queued));
    prom_family(p, "appstack_proxy_upstream_up", "gauge",
                "1 for an upstream in use, 0 while it is skipped after a failure (this process's view).");
    for (const struct upstream *u = upstream_registry(); u; u = u->reg_next) {
        if (!u->listed)
            continue;           /* draining after a reload */
        prom_escape(u->name, esc, sizeof esc);
        snprintf(labels, sizeof labels, "upstream=\"%s\"", esc);
        prom_u64(p, "appstack_proxy_upstream_up", labels, upstream_up(u, now));
    }
}

static void metrics_text(void *ctx, struct prom *p)
{
    struct pm_counters t;

    (void)ctx;
    pm_sum(&t);
    prom_family(p, "appstack_proxy_ready", "gauge", "1 while the proxy accepts connections (/healthz 200).");
    prom_u64(p, "appstack_proxy_ready", NULL, srv.accepting && !srv.stopping);
    requests_text(&t, p);
    connections_text(&t, p);
    upstream_text(&t, p);
}

static bool ready_cb(void *ctx, const char **why)
{
    (void)ctx;
    if (srv.stopping) {
        *why = "stopping";
        return false;
    }
    if (!srv.accepting) {
        *why = "not accepting yet";
        return false;
    }
    return true;
}

bool pm_server_open(void)
{
    const struct as_config *cfg = &srv.rt->cfg;
    char err[256];

    if (!cfg->proxy_metrics)
        return true;
    pmx.server.metrics = metrics_text;
    pmx.server.ready = ready_cb;
    if (!metrics_server_open(&pmx.server, srv.loop, cfg->proxy_metrics, err, sizeof err)) {
        as_err("%s:%d: metrics = %s: %s", cfg->path, cfg->proxy_metrics_line, cfg->proxy_metrics, err);
        return false;
    }
    as_info("metrics on %s (/metrics, /healthz)", cfg->proxy_metrics);
    return true;
}

void pm_server_close(void)
{
    metrics_server_close(&pmx.server);
}

void pm_server_serve(bool on)
{
    metrics_server_serve(&pmx.server, on);
}

void pm_server_reloaded(const char *addr)
{
    const char *now = pmx.server.addr;

    if ((now == NULL) != (addr == NULL) || (now && strcmp(now, addr)))
        as_warn("metrics changed in the config: %s stays %s until appstack-proxy restarts", "the metrics listen",
                now ? now : "off");
}
