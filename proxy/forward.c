/* Forwarding: the buffered request goes to an upstream with cleaned headers
 * and a Content-Length (upstream_io.c moves the bytes); the response head
 * becomes the client's without its hop-by-hop headers, and failures become
 * retries or an answer (502/504) while the client has seen nothing yet. */
#include "upstream.h"
#include "compress.h"
#include "headw.h"
#include "tunnel.h"
#include "accel.h"
#include "realip.h"
#include "metrics.h"
#include "pathtime.h"
#include "site.h"
#include "worker_ident.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fwd_head.h"
#include "http_fields.h"

/* "host:port" of the address the client reached, into BUF, for a request
 * that named no Host (fwd_head.h). */
static const char *local_host(const struct exchange *x, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[INET6_ADDRSTRLEN];

    if (getsockname(x->c->fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family == AF_UNIX)
        return "localhost";
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof addr);
        snprintf(buf, size, "[%s]:%u", addr, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in4->sin_addr, addr, sizeof addr);
        snprintf(buf, size, "%s:%u", addr, ntohs(in4->sin_port));
    }
    return buf;
}

static bool idempotent(const char *m)
{
    static const char *const ok[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };

    for (const char *const *p = ok; *p; p++)
        if (!strcmp(m, *p))
            return true;
    return false;
}

/* Whether the client is a front server of real_ip_from, whose
 * X-Forwarded-* headers are kept (docs/proxy.md). */
bool exchange_from_front(const struct exchange *x)
{
    return realip_front(x->c);
}

/* The request line and the client's fields (fwd_head.c), then the
 * X-Forwarded-* trio (a front server's values kept, its X-Forwarded-For
 * with the front's own address appended; anyone else's replaced by ours)
 * and the Content-Length. */
static void build_head(struct exchange *x, struct headw *h)
{
    const struct as_http_request *r = x->req;
    const struct as_http_header *conn_h = as_http_header(r, "Connection");
    const struct as_http_header *host = r->host;
    bool front = exchange_from_front(x);
    const struct as_http_header *xff = front ? as_http_header(r, "X-Forwarded-For") : NULL;
    const struct as_http_header *xfp = front ? as_http_header(r, "X-Forwarded-Proto") : NULL;
    const struct as_http_header *xfh = front ? as_http_header(r, "X-Forwarded-Host") : NULL;
    uint64_t len = x->body.total;
    char lh[INET6_ADDRSTRLEN + 8];

    fwd_request_head(h, r, conn_h, host ? NULL : local_host(x, lh, sizeof lh));
    hw_put(h, "X-Forwarded-For: ", 17);
    if (xff && xff->value_len) {
        hw_put(h, xff->value, xff->value_len);
        hw_put(h, ", ", 2);
    }
    hw_put(h, x->c->peer, strlen(x->c->peer));
    hw_put(h, "\r\n", 2);
    if (xfp && xfp->value_len)
        hw_header(h, "X-Forwarded-Proto", 17, xfp->value, xfp->value_len);
    else
        hw_header(h, "X-Forwarded-Proto", 17, exchange_scheme(x), strlen(exchange_scheme(x)));
    if (xfh && xfh->value_len)
        hw_header(h, "X-Forwarded-Host", 16, xfh->value, xfh->value_len);
    else if (host)
        hw_header(h, "X-Forwarded-Host", 16, host->value, host->value_len);
    hw_header(h, "X-Request-ID", 12, x->id, strlen(x->id));
    /* Which worker takes a new connection (balancer.c); answered once per
     * connection, ignored by servers that do not know it. */
    hw_put(h, AS_WORKER_FIELD ": ?\r\n", sizeof AS_WORKER_FIELD + 4);
    if (len || r->content_length >= 0 || r->chunked
        || (r->method[0] == 'P' && (!strcmp(r->method, "POST") || !strcmp(r->method, "PUT")
                                    || !strcmp(r->method, "PATCH")))) {
        hw_put(h, "Content-Length: ", 16);
        hw_u64(h, len);
        hw_put(h, "\r\n", 2);
    }
    realip_forwarded(x, h);
    tunnel_request_fields(x, h);
    hw_put(h, "\r\n", 2);
}

/* The balancer the exchange's requests go to. */
static struct balancer *balancer_of(const struct exchange *x)
{
    return x->site->bal;
}

void forward_detach(struct exchange *x)
{
    struct upconn *u = x->up;

    if (!u)
        return;
    x->up = NULL;
    if (u->x != x)
        upstream_unpipeline(u, x);
    else
        upstream_release(u, false);
}

/* Attempts that count against the limits below: not those on pooled
 * connections that turned out closed before a byte of the request went out
 * (they never reached a worker). */
static int attempts(const struct exchange *x)
{
    return x->tries - x->unsent;
}

void forward_retry(struct exchange *x)
{
    if (attempts(x) < 4)
        balancer_submit(balancer_of(x), x, NULL);
    else
        forward_fail(x, 502);
}

void forward_end(struct exchange *x)
{
    forward_detach(x);
    balancer_cancel(x);
    upstream_put(x->upstream);
    x->upstream = NULL;
}

void forward_fail(struct exchange *x, int status)
{
    if (x->head_sent) {
        exchange_abort(x);      /* the client saw a head: only a close can say it broke */
        return;
    }
    forward_detach(x);
    exchange_error(x, status, false);
}

/* The connection broke before a response byte: retry when that is safe. */
void forward_broken(struct exchange *x, int err, bool connect_failed)
{
    struct upconn *u = x->up;
    struct upstream *up = u->u;
    bool reused = u->reused, unsent = reused && x->body.sent == 0;
    struct balancer *b = balancer_of(x);

    as_warn("upstream %s: %s %s: %s", up->name, x->req->method,
            connect_failed ? "connect" : "no response", err ? strerror(err) : "connection closed");
    if (reused)
        upstream_worker_closing(u);
    forward_detach(x);
    if (connect_failed) {
        PM_INC(up_connect_errors);
        upstream_fault(up, "connect failed");
        if (attempts(x) < (int)b->n + 1) {
            balancer_submit(b, x, up);      /* nothing was sent: any method may go elsewhere */
            return;
        }
    } else if (unsent && x->unsent < UPSTREAM_UNSENT_MAX) {
        /* A pooled connection found closed as we sent: when the old
         * workers of a reload close their idle connections, several of
         * them may be, and this one never reached a worker. */
        x->unsent++;
        balancer_submit(b, x, NULL);
        return;
    } else if (reused && attempts(x) < 4) {
        balancer_submit(b, x, NULL);        /* a pooled connection the worker had closed */
        return;
    } else if (idempotent(x->req->method) && attempts(x) < 3) {
        balancer_submit(b, x, up);
        return;
    }
    forward_fail(x, 502);
}

void forward_timed_out(struct exchange *x, bool connecting)
{
    struct upstream *up = x->up->u;
    struct balancer *b = balancer_of(x);

    /* Never the same upstream again: it just did not answer in time. */
    if (!x->head_sent && (connecting || idempotent(x->req->method)) && attempts(x) < 3
        && balancer_other(b, up, ev_now(srv.loop))) {
        forward_detach(x);
        balancer_submit(b, x, up);
        return;
    }
    forward_fail(x, 504);
}

void forward_start(struct exchange *x)
{
    struct spool head;
    struct headw w;

    if (!tunnel_admit(x))
        return;
    /* Only what may be sent again is sent behind another request; nothing
     * behind an upgrade, whose connection may become a tunnel. */
    x->pipelinable = !x->tunnel && x->body.total == 0 && (!strcmp(x->req->method, "GET") || x->head_only);
    spool_init(&head, SIZE_MAX, false);
    hw_init(&w, &head);
    build_head(x, &w);
    hw_flush(&w);
    spool_prepend(&x->body, &head);
    x->tries = 0;
    x->unsent = 0;
    x->t_forward = ev_time();
    x->fwd_start = ev_now(srv.loop);
    x->started = 0;
    x->path_key = pathtime_key(x->req->method, x->req->target, x->req->target_len);
    x->slow = pathtime_expect(x->path_key) >= BALANCER_SLOW && !isinf(pathtime_expect(x->path_key));
    x->slow_counted = false;
    balancer_submit(balancer_of(x), x, NULL);
}

/* The value of the response head's field NAME, or NULL. */
static const char *resp_field(const struct upconn *u, const char *name, size_t nl, size_t *vl)
{
    for (int i = 0; i < u->n_hdr; i++) {
        if (u->hdr[i].nl == nl && !strncasecmp(u->head + u->hdr[i].no, name, nl)) {
            *vl = u->hdr[i].vl;
            return u->head + u->hdr[i].vo;
        }
    }
    return NULL;
}

/* Compression of an upstream response (compress.h): not when it is
 * encoded already, asks not to be transformed, or is not eligible.
 * Returns the coding; *VARY when Vary: Accept-Encoding must be added. */
static int response_coding(struct exchange *x, const struct upconn *u, int status, bool has_len, bool *vary)
{
    size_t tl = 0, el = 0, cl = 0, vl = 0;
    const char *type, *enc, *cc, *v;
    int64_t len = has_len ? (int64_t)u->parser.content_length : -1;

    *vary = false;
    if (!x->rt->cfg.gzip && !x->rt->cfg.brotli)
        return AE_IDENTITY;
    type = resp_field(u, "Content-Type", 12, &tl);
    enc = resp_field(u, "Content-Encoding", 16, &el);
    cc = resp_field(u, "Cache-Control", 13, &cl);
    if ((enc && !(el == 8 && !strncasecmp(enc, "identity", 8))) || (cc && as_http_list_has_n(cc, cl, "no-transform", 12))
        || !compress_eligible(x, status, len, type, tl))
        return AE_IDENTITY;
    v = resp_field(u, "Vary", 4, &vl);
    *vary = !v || !(as_http_list_has_n(v, vl, "Accept-Encoding", 15) || as_http_list_has_n(v, vl, "*", 1));
    return compress_coding(x);
}

/* The client's response head from the upstream's. */
void forward_response_head(struct exchange *x, struct upconn *u)
{
    const char *b = u->head;
    int status = u->parser.status_code;
    bool has_len = u->parser.flags & F_CONTENT_LENGTH, own_hsts = x->rt->hsts != NULL, vary;
    bool no_body = x->head_only || status == 204 || status == 304;
    int coding = no_body ? AE_IDENTITY : response_coding(x, u, status, has_len, &vary);
    struct headw w;
    double wait = ev_time() - x->t_forward;

    pm_upstream_wait(wait > 0 ? (uint64_t)(wait * 1e6) : 0);
    if (accel_begin(x, u))
        return;         /* the file goes out instead, once the response is read */
    if (no_body)
        vary = false;
    if (coding != AE_IDENTITY && !compress_start(x, coding, has_len ? u->parser.content_length : 0, !has_len))
        coding = AE_IDENTITY;
    resp_head_begin(x, &w, status, b + u->st_off, u->st_len);
    for (int i = 0; i < u->n_hdr; i++) {
        const char *name = b + u->hdr[i].no;
        size_t nl = u->hdr[i].nl;
        /* X-Request-ID: the client gets the request's one, from resp_head_begin. */
        if (as_http_hop_by_hop(name, nl) || as_http_name_is(name, nl, AS_WORKER_FIELD) ||
            as_http_name_is(name, nl, "X-Request-ID"))
            continue;
        if (own_hsts && nl == 25 && !strncasecmp(name, "Strict-Transport-Security", 25))
            continue;           /* hsts in the config wins */
        if (accel_field(name, nl))
            continue;           /* X-Accel-* are for the proxy, as with nginx */
        if (coding != AE_IDENTITY) {
            /* the encoded body has another length, no byte ranges, and is
             * only weakly the same entity (as nginx does) */
            if ((nl == 14 && !strncasecmp(name, "Content-Length", 14)) ||
                (nl == 13 && !strncasecmp(name, "Accept-Ranges", 13)) ||
                (nl == 16 && !strncasecmp(name, "Content-Encoding", 16)))
                continue;
            if (nl == 4 && !strncasecmp(name, "ETag", 4) && u->hdr[i].vl && b[u->hdr[i].vo] == '"') {
                hw_put(&w, "ETag: W/", 8);
                hw_put(&w, b + u->hdr[i].vo, u->hdr[i].vl);
                hw_put(&w, "\r\n", 2);
                continue;
            }
        }
        hw_header(&w, name, nl, b + u->hdr[i].vo, u->hdr[i].vl);
    }
    if (coding != AE_IDENTITY) {
        hw_put(&w, "Content-Encoding: ", 18);
        hw_str(&w, compress_coding_name(coding));
        hw_put(&w, "\r\n", 2);
    }
    if (vary)
        hw_put(&w, "Vary: Accept-Encoding\r\n", 23);
    if (no_body)
        resp_head_end(x, &w, BODY_NONE);
    else
        resp_head_end(x, &w, has_len && coding == AE_IDENTITY ? BODY_LENGTH : BODY_UNKNOWN);
}

void forward_response_done(struct exchange *x, bool reusable)
{
    struct upconn *u = x->up;

    x->up = NULL;
    upstream_release(u, reusable);
    if (x->accel) {
        accel_serve(x);
        return;
    }
    resp_done(x);
}

void forward_init(void)
{
    upconn_init_parser();
}
