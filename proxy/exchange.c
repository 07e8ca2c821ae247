/* Exchanges (exchange.h): their storage, what a request becomes once it is
 * read (a file, a forward, an error), and the one place they end. Exchanges
 * and parsers come from free lists: a busy proxy does not malloc per
 * request. */
#include "exchange.h"
#include "compress.h"
#include "site.h"
#include "metrics.h"
#include "tunnel.h"
#include "accel.h"
#include "realip.h"
#include "limit.h"
#include "xalloc.h"

#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#define EXCHANGE_CACHE 1024         /* kept for reuse: one per request in flight */
#define PARSER_CACHE 1024
#define PATH_MAX_DECODED 4200

static struct {
    struct exchange *free;
    int n;
} exchanges;

static struct {
    struct as_http_request *v[PARSER_CACHE];
    int n;
} parsers;

static struct as_http_request *parser_get(const struct as_http_limits *limits)
{
    struct as_http_request *r;

    if (parsers.n) {
        struct as_http_limits same = *limits;
        r = parsers.v[--parsers.n];
        same.max_body = r->limits.max_body;     /* each site sets its own (exchange_head_done) */
        if (!memcmp(&r->limits, &same, sizeof same)) {
            r->limits.max_body = limits->max_body;
            return r;
        }
        as_http_free(r);
    } else {
        r = as_xmalloc(sizeof *r);
    }
    as_http_init(r, limits);
    return r;
}

static void parser_put(struct as_http_request *r)
{
    if (!r)
        return;
    if (r->state == AS_HTTP_DONE && parsers.n < PARSER_CACHE) {
        as_http_next(r);
        parsers.v[parsers.n++] = r;
        return;
    }
    as_http_free(r);
    free(r);
}

struct exchange *exchange_new(struct conn *c)
{
    struct exchange *x = exchanges.free;

    if (x) {
        /* exchange_finish left its spools empty and ready */
        exchanges.free = x->next_free;
        exchanges.n--;
    } else {
        x = as_xmalloc(sizeof *x);
        spool_init(&x->body, 0, true);
        spool_init(&x->out, RESP_MEM_LIMIT, false);
    }
    x->c = c;
    if (c->n_exchanges++ == 0)
        PM_INC(active);
    x->rt = runtime_get(srv.rt);
    as_request_id_new(x->id);
    x->site = NULL;
    x->req = parser_get(&x->rt->limits);
    x->up = NULL;
    x->upstream = NULL;
    x->tries = 0;
    x->unsent = 0;
    x->q_bal = NULL;
    x->queue_wait = 0;
    x->status = 0;
    x->t0 = ev_time();
    x->head_only = x->http10 = x->keep_alive = x->static_req = false;
    x->head_sent = x->chunk_out = x->resp_done = false;
    x->enc = NULL;
    x->tunnel = NULL;
    x->accel = NULL;
    memcpy(x->client, c->peer, sizeof x->client);
    x->client_port = c->peer_port;
    x->limits_done = false;
    x->limit_conn = NULL;
    ev_init(&x->limit_wait, NULL);
    x->h2 = x->h2_ws = false;
    x->out.mem_limit = RESP_MEM_LIMIT;     /* an HTTP/2 stream may have had less */
    return x;
}

void exchange_finish(struct exchange *x, bool completed)
{
    double t = ev_time() - x->t0;

    if (tunnel_opened(x))
        completed = true;       /* however a tunnel ends, its entry says how long it lasted */
    x->usec = t > 0 ? (uint64_t)(t * 1e6) : 0;
    pm_exchange_done(x, completed, x->usec);
    if (--x->c->n_exchanges == 0)
        PM_DEC(active);
    if (completed) {
        srv.requests++;
        access_log(x);
    }
    forward_end(x);
    compress_end(x);
    tunnel_end(x);
    accel_end(x);
    limit_release(x);
    spool_free(&x->body);
    spool_free(&x->out);
    parser_put(x->req);
    runtime_put(x->rt);
    if (exchanges.n >= EXCHANGE_CACHE) {
        free(x);
        return;
    }
    x->next_free = exchanges.free;
    exchanges.free = x;
    exchanges.n++;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    struct exchange *x = ctx;

    return spool_append(&x->body, data, len) < 0 ? -1 : 0;
}

/* The site of a request, by its Host. */
static struct site *site_of(struct exchange *x, const struct as_http_request *r)
{
    const struct runtime *rt = x->rt;

    if (!rt->names.mask)
        return rt->default_site;    /* no [site]: no need to look */
    if (!r->host)
        return rt->default_site;
    return site_for_host_memo(rt, &x->c->site_memo, r->host->value, r->host->value_len);
}

/* A front server of real_ip_from may have named the request already: its
 * ID is kept, so that one ID follows the request through every hop.
 * Anyone else's is replaced by ours (it would let a client pick the ID
 * that other requests' log entries are found by). */
static void keep_request_id(struct exchange *x)
{
    const struct as_http_header *h = as_http_header(x->req, "X-Request-ID");

    if (h && as_request_id_valid(h->value, h->value_len) && exchange_from_front(x)) {
        memcpy(x->id, h->value, h->value_len);
        x->id[h->value_len] = '\0';
    }
}

bool exchange_head_done(struct exchange *x)
{
    struct as_http_request *r = x->req;

    /* The first letter spares most requests a strcmp call. */
    x->head_only = r->method[0] == 'H' && !strcmp(r->method, "HEAD");
    realip_request(x);
    keep_request_id(x);
    x->site = site_of(x, r);
    if (!x->site) {
        exchange_error(x, 421, true);   /* no site of that name here, and no default */
        return false;
    }
    /* The parser checked the largest limit of any site; now the site's. */
    r->limits.max_body = x->site->max_body;
    if (x->site->max_body && r->content_length > 0 && (uint64_t)r->content_length > x->site->max_body) {
        exchange_error(x, 413, true);
        return false;
    }
    x->body.mem_limit = x->site->body_buffer_size;   /* still empty */
    r->on_body = on_body;
    r->ctx = x;
    return true;
}

#define ACME_PREFIX "/.well-known/acme-challenge/"

/* redirect_https: the same host and target on the TLS port. The host is
 * the request's (without its port), else the address the client reached. */
static void redirect_https(struct exchange *x)
{
    const struct as_http_header *h = x->req->host;
    char host[300], location[PATH_MAX_DECODED + 400];
    size_t hl = 0, n;

    if (h && h->value_len && h->value_len < sizeof host) {
        hl = h->value[0] == '[' ? (size_t)((const char *)memchr(h->value, ']', h->value_len) ?
                                           (const char *)memchr(h->value, ']', h->value_len) - h->value + 1 : 0)
                                : strcspn(h->value, ":");
        memcpy(host, h->value, hl);
    }
    if (!hl) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        char addr[128];
        if (getsockname(x->c->fd, (struct sockaddr *)&ss, &len) < 0) {
            exchange_error(x, 400, true);
            return;
        }
        as_addr_format((struct sockaddr *)&ss, len, addr, sizeof addr);
        hl = addr[0] == '[' ? strcspn(addr, "]") + 1 : strcspn(addr, ":");
        memcpy(host, addr, hl);
    }
    host[hl] = '\0';
    /* The target's path and query: an absolute-form target names a host
     * the Host header already gave. */
    n = (size_t)snprintf(location, sizeof location, "Location: https://%s", host);
    if (x->rt->https_port != 443)
        n += (size_t)snprintf(location + n, sizeof location - n, ":%d", x->rt->https_port);
    if (n < sizeof location)
        n += (size_t)snprintf(location + n, sizeof location - n, "%.*s%s%.*s\r\n", (int)x->req->path_len,
                              x->req->path, x->req->query ? "?" : "", (int)x->req->query_len,
                              x->req->query ? x->req->query : "");
    if (n >= sizeof location) {
        exchange_error(x, 414, true);
        return;
    }
    x->static_req = true;
    resp_simple(x, 301, location);
    resp_output(x);
}

/* The request from the locations LOCS (their static_resolve view SP), or
 * forwarded when none matches. */
static void serve(struct exchange *x, const struct sp_location *sp, const struct location_rt *locs, size_t n)
{
    char path[PATH_MAX_DECODED];
    const char *rel = NULL;
    size_t idx = 0;
    enum sp_result r;

    /* The path, also of an absolute-form target ("http://host/path"). */
    r = static_resolve(x->req->path, x->req->path_len, sp, n, path, sizeof path, &idx, &rel);
    if ((r == SP_STATIC || r == SP_FORWARD) && limit_check(x, r == SP_STATIC ? &locs[idx] : NULL) != LIMIT_PASS)
        return;     /* refused, or waiting for its turn (limit.h) */
    switch (r) {
    case SP_STATIC:
        if (!locs[idx].alias) {
            forward_start(x);       /* a location for its limits only */
            return;
        }
        x->static_req = true;
        if (locs[idx].internal) {
            resp_simple(x, 404, NULL);      /* for X-Accel-Redirect only */
            resp_output(x);
            return;
        }
        static_serve(x, &locs[idx], rel, path);
        resp_output(x);
        return;
    case SP_NOT_FOUND:
        x->static_req = true;
        resp_simple(x, 404, NULL);
        resp_output(x);
        return;
    case SP_BAD_REQUEST:
        exchange_error(x, 400, true);
        return;
    case SP_FORWARD:
        forward_start(x);
        return;
    }
}

void exchange_dispatch(struct exchange *x)
{
    const struct runtime *rt = x->rt;
    bool challenge = x->req->path_len >= sizeof ACME_PREFIX - 1
                     && !memcmp(x->req->path, ACME_PREFIX, sizeof ACME_PREFIX - 1);

    /* acme = on: the HTTP-01 answers of the proxy's own ACME client, from
     * its state directory, on every site. */
    if (challenge && rt->acme.alias) {
        serve(x, &rt->acme.sp, &rt->acme, 1);
        return;
    }
    if (rt->cfg.redirect_https && !x->c->tp->secure && !challenge) {
        redirect_https(x);
        return;
    }
    serve(x, x->site->sp, x->site->locs, x->site->n_locs);
}

void exchange_error(struct exchange *x, int status, bool close_after)
{
    /* An interim 100 partly on the wire must be completed, not dropped:
     * the transport may be in the middle of it. */
    if (!x->out.sent)
        spool_free(&x->out);
    compress_end(x);
    x->chunk_out = false;
    if (close_after)
        x->keep_alive = false;
    resp_simple(x, status, NULL);
    resp_output(x);
}

void exchange_abort(struct exchange *x)
{
    x->c->proto->abort(x);
}
