/* Forwarding: the buffered request goes to an upstream with cleaned headers
 * and a Content-Length (upstream_io.c moves the bytes); the response head
 * becomes the client's without its hop-by-hop headers, and failures become
 * retries or an answer (502/504) while the client has seen nothing yet. */
#include "upstream.h"
#include "headw.h"
#include "site.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Hop-by-hop (RFC 9110 7.6.1) and the ones the proxy writes itself. Lengths
 * are kept so that most headers are ruled out by one integer compare. */
struct name {
    const char *s;
    size_t n;
};
#define NAME(x) { x, sizeof x - 1 }
static const struct name req_drop[] = {
    NAME("Connection"), NAME("Keep-Alive"), NAME("Proxy-Connection"), NAME("TE"), NAME("Trailer"),
    NAME("Transfer-Encoding"), NAME("Upgrade"), NAME("Content-Length"), NAME("Expect"),
    NAME("X-Forwarded-For"), NAME("X-Forwarded-Proto"), NAME("X-Forwarded-Host"), { NULL, 0 }
};
static const struct name resp_drop[] = {
    NAME("Connection"), NAME("Keep-Alive"), NAME("Proxy-Connection"), NAME("TE"), NAME("Trailer"),
    NAME("Transfer-Encoding"), NAME("Upgrade"), { NULL, 0 }
};

static bool in_list(const struct name *list, const char *name, size_t len)
{
    for (; list->s; list++)
        if (list->n == len && !strncasecmp(list->s, name, len))
            return true;
    return false;
}

/* Is NAME one of the comma-separated tokens of V? */
static bool in_tokens(const char *v, size_t vlen, const char *name, size_t len)
{
    const char *end = v + vlen;

    while (v < end) {
        const char *s, *e;
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        s = v;
        while (v < end && *v != ',')
            v++;
        e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == len && !strncasecmp(s, name, len))
            return true;
    }
    return false;
}

static bool idempotent(const char *m)
{
    static const char *const ok[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };

    for (const char *const *p = ok; *p; p++)
        if (!strcmp(m, *p))
            return true;
    return false;
}

/* The request line and cleaned headers, then the X-Forwarded-* trio. */
static void build_head(struct exchange *x, struct headw *h)
{
    const struct as_http_request *r = x->req;
    const struct as_http_header *conn_h = as_http_header(r, "Connection");
    const struct as_http_header *xff = as_http_header(r, "X-Forwarded-For");
    const struct as_http_header *host = as_http_header(r, "Host");
    uint64_t len = x->body.total;

    hw_str(h, r->method);
    hw_put(h, " ", 1);
    hw_put(h, r->target, r->target_len);
    hw_put(h, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct as_http_header *hd = &r->headers[i];
        if (in_list(req_drop, hd->name, hd->name_len))
            continue;
        if (conn_h && in_tokens(conn_h->value, conn_h->value_len, hd->name, hd->name_len))
            continue;
        hw_header(h, hd->name, hd->name_len, hd->value, hd->value_len);
    }
    hw_put(h, "X-Forwarded-For: ", 17);
    if (xff && xff->value_len) {
        hw_put(h, xff->value, xff->value_len);
        hw_put(h, ", ", 2);
    }
    hw_put(h, x->c->peer, strlen(x->c->peer));
    hw_put(h, "\r\nX-Forwarded-Proto: http\r\n", 27);
    if (host)
        hw_header(h, "X-Forwarded-Host", 16, host->value, host->value_len);
    if (len || r->content_length >= 0 || r->chunked || !strcmp(r->method, "POST")
        || !strcmp(r->method, "PUT") || !strcmp(r->method, "PATCH")) {
        hw_put(h, "Content-Length: ", 16);
        hw_u64(h, len);
        hw_put(h, "\r\n", 2);
    }
    hw_put(h, "\r\n", 2);
}

static void attempt(struct exchange *x, bool fresh, struct upstream *avoid);

void forward_detach(struct exchange *x)
{
    struct upconn *u = x->up;

    if (!u)
        return;
    x->up = NULL;
    upstream_release(u, false);
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
    bool reused = u->reused;

    as_warn("upstream %s: %s %s: %s", up->name, x->req->method,
            connect_failed ? "connect" : "no response", err ? strerror(err) : "connection closed");
    forward_detach(x);
    if (connect_failed) {
        upstream_failed(up);
        if (x->tries < (int)x->site->ups.n + 1) {
            attempt(x, true, up);   /* nothing was sent: any method may go elsewhere */
            return;
        }
    } else if (reused && x->tries < 2) {
        attempt(x, true, NULL);     /* a pooled connection the worker had closed */
        return;
    } else if (idempotent(x->req->method) && x->tries < 3) {
        attempt(x, true, up);
        return;
    }
    forward_fail(x, 502);
}

static void attempt(struct exchange *x, bool fresh, struct upstream *avoid)
{
    struct upconn *u;

    /* A refused connect costs nothing to retry elsewhere: nothing was sent. */
    for (;;) {
        x->upstream = upstream_pick(&x->site->ups, avoid);
        u = upstream_take(x->rt, x->upstream, fresh);
        x->tries++;
        if (u)
            break;
        if (x->tries > (int)x->site->ups.n) {
            forward_fail(x, 502);
            return;
        }
        avoid = x->upstream;
        fresh = true;
    }
    upconn_start(u, x);
}

void forward_start(struct exchange *x)
{
    struct spool head;
    struct headw w;

    spool_init(&head, SIZE_MAX, false);
    hw_init(&w, &head);
    build_head(x, &w);
    hw_flush(&w);
    spool_prepend(&x->body, &head);
    x->tries = 0;
    attempt(x, false, NULL);
}

/* The client's response head from the upstream's. */
void forward_response_head(struct exchange *x, struct upconn *u)
{
    const char *b = u->rbuf->data;
    int status = u->parser.status_code;
    bool has_len = u->parser.flags & F_CONTENT_LENGTH;
    struct headw w;

    resp_head_begin(x, &w, status, b + u->st_off, u->st_len);
    for (int i = 0; i < u->n_hdr; i++) {
        const char *name = b + u->hdr[i].no;
        if (in_list(resp_drop, name, u->hdr[i].nl))
            continue;
        hw_header(&w, name, u->hdr[i].nl, b + u->hdr[i].vo, u->hdr[i].vl);
    }
    if (x->head_only || status == 204 || status == 304)
        resp_head_end(x, &w, BODY_NONE);
    else
        resp_head_end(x, &w, has_len ? BODY_LENGTH : BODY_UNKNOWN);
}

void forward_response_done(struct exchange *x, bool reusable)
{
    struct upconn *u = x->up;

    x->up = NULL;
    upstream_release(u, reusable);
    resp_done(x);
}

void forward_init(void)
{
    upconn_init_parser();
}
