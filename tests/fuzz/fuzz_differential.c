/* libFuzzer target: a worker's verdict against the proxy's on the same
 * bytes (differential).
 *
 * The input is what a client sends on one connection. The worker's reading
 * of it is the shared parser's, as a worker runs it for a client. The
 * proxy's is the same parser with the proxy's limits, then what it
 * forwards: for each request it accepts, the upstream head it writes
 * (proxy/fwd_head.c, as forward.c calls it) and the body with a
 * Content-Length, read again by a worker's parser with the room a worker
 * gives its proxy. What must hold:
 *
 * - both refuse the same requests, with the same status, and accept the
 *   same ones;
 * - a forwarded request is always accepted by the worker, whole, as one
 *   message;
 * - it means what the client's bytes meant: the same method, path
 *   (percent-decoded, as PATH_INFO), query, body, and the same fields but
 *   those the proxy drops on purpose (hop-by-hop, named in Connection,
 *   Content-Length, Expect, X-Forwarded-*, X-Request-ID, Appstack-Worker); Host is the client's, or the
 *   proxy's address when the client named none.
 *
 * The first byte picks the read size of the client's bytes (low nibble,
 * 1..16) and small limits (bit 4). Built by `make fuzz`; replayed on every
 * seed and reproducer by `make check`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_head.h"
#include "http_fields.h"
#include "http_parse.h"
#include "http_uri.h"

#define PROXY_ADDR "127.0.0.1:8080"

struct text {
    char *p;
    size_t len, cap;
};

static void put(struct text *t, const void *data, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 256;
        t->p = realloc(t->p, t->cap);
        if (!t->p)
            abort();
    }
    memcpy(t->p + t->len, data, n);
    t->len += n;
}

static void put_str(struct text *t, const char *s)
{
    put(t, s, strlen(s) + 1);   /* with the NUL: a separator no field holds */
}

static int collect(void *ctx, const char *data, size_t len)
{
    put(ctx, data, len);
    return 0;
}

/* Fields the proxy does not pass on, on purpose (docs/proxy.md). */
static bool dropped(const struct as_http_request *r, const struct as_http_header *f)
{
    const struct as_http_header *conn = as_http_header(r, "Connection");

    return as_http_hop_by_hop(f->name, f->name_len) || as_http_name_is(f->name, f->name_len, "content-length") ||
           as_http_name_is(f->name, f->name_len, "expect") ||
           as_http_name_is(f->name, f->name_len, "x-forwarded-for") ||
           as_http_name_is(f->name, f->name_len, "x-forwarded-proto") ||
           as_http_name_is(f->name, f->name_len, "x-forwarded-host") ||
           as_http_name_is(f->name, f->name_len, "appstack-worker") ||
           as_http_name_is(f->name, f->name_len, "x-request-id") ||
           (conn && !as_http_name_is(f->name, f->name_len, "host") &&
            as_http_list_has_n(conn->value, conn->value_len, f->name, f->name_len));
}

/* What an app would be told of the request: method, PATH_INFO, query, the
 * fields kept (names in lower case), then the body once it is in. */
static void describe(const struct as_http_request *r, struct text *t, bool host_added)
{
    char *path = malloc(r->path_len + 1);
    ssize_t n = as_pct_decode(r->path, r->path_len, path, NULL);

    if (!path || n < 0)
        abort();        /* the parser lets no bad escape through */
    put_str(t, r->method);
    put(t, path, (size_t)n);
    put(t, "", 1);
    free(path);
    if (r->query)
        put(t, r->query, r->query_len);
    put_str(t, r->query ? "?" : "-");
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct as_http_header *f = &r->headers[i];
        if (dropped(r, f) || (host_added && as_http_name_is(f->name, f->name_len, "host")))
            continue;
        for (size_t j = 0; j < f->name_len; j++) {
            char c = as_ascii_lower(f->name[j]);
            put(t, &c, 1);
        }
        put(t, ":", 1);
        put(t, f->value, f->value_len);
        put(t, "", 1);
    }
    put(t, "|", 1);
}

/* One message of DATA through R: its end state; *USED its bytes. */
static enum as_http_state one(struct as_http_request *r, const char *data, size_t len, size_t chunk,
                              size_t *used, void (*on_head)(const struct as_http_request *, void *), void *ctx)
{
    size_t pos = 0, avail = chunk < len ? chunk : len, c;

    while (r->state != AS_HTTP_ERROR && r->state != AS_HTTP_DONE) {
        if (pos == avail) {
            if (avail == len)
                break;
            avail = avail + chunk < len ? avail + chunk : len;
        }
        c = as_http_feed(r, data + pos, avail - pos);
        if (c > avail - pos)
            abort();
        pos += c;
        if (r->state == AS_HTTP_HEAD_DONE) {
            on_head(r, ctx);
            as_http_begin_body(r);
        }
    }
    *used = pos;
    return r->state;
}

struct seen {
    struct text head, body;
    bool host_added;
};

static void describe_head(const struct as_http_request *r, void *ctx)
{
    struct seen *s = ctx;

    describe(r, &s->head, s->host_added);
}

/* The proxy forwards the request R has read, with BODY: what the upstream
 * gets, as bytes. */
static void forward(const struct as_http_request *r, const struct text *body, struct text *out)
{
    struct spool sp;
    struct headw w;
    char num[32];
    const char *p;
    bool more = true;
    size_t n;

    spool_init(&sp, SIZE_MAX, false);
    hw_init(&w, &sp);
    fwd_request_head(&w, r, as_http_header(r, "Connection"), PROXY_ADDR);
    snprintf(num, sizeof num, "Content-Length: %zu\r\n\r\n", body->len);
    hw_str(&w, num);
    hw_flush(&w);
    while (more && (n = spool_peek(&sp, &p, &more)) > 0) {
        put(out, p, n);
        spool_advance(&sp, n);
    }
    spool_free(&sp);
    put(out, body->p ? body->p : "", body->len);
}

/* The worker reads what the proxy forwarded: one whole message, which it
 * must accept; its description goes to SEEN. */
static void worker_reads_forwarded(const struct text *fwd, const struct as_http_limits *l, struct seen *seen)
{
    struct as_http_request w;
    size_t used;

    as_http_init(&w, l);
    w.on_body = collect;
    w.ctx = &seen->body;
    if (one(&w, fwd->p, fwd->len, fwd->len, &used, describe_head, seen) != AS_HTTP_DONE || used != fwd->len) {
        fprintf(stderr, "the worker refuses what the proxy forwarded (%d %s):\n%.*s\n", w.status,
                w.error ? w.error : "", (int)(fwd->len < 2000 ? fwd->len : 2000), fwd->p);
        abort();
    }
    as_http_free(&w);
}

static bool same(const struct text *a, const struct text *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static void reset(struct seen *s)
{
    s->head.len = s->body.len = 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const struct as_http_limits small = { 64, 4, 48, 160, 100 };
    const struct as_http_limits *base = size && (data[0] & 16) ? &small : NULL;
    struct as_http_limits proxy_limits, worker_from_proxy;
    struct as_http_request direct, proxy;
    struct seen d = { 0 }, p = { 0 }, f = { 0 };
    struct text fwd = { 0 };
    const char *in = (const char *)data + 1;
    size_t len, chunk, pd = 0, pp = 0, ud, up;

    if (size < 1)
        return 0;
    len = size - 1;
    chunk = (size_t)(data[0] & 15) + 1;
    as_http_init(&direct, base);
    proxy_limits = direct.limits;               /* the same configuration */
    worker_from_proxy = direct.limits;
    worker_from_proxy.max_fields += AS_HTTP_PROXY_EXTRA_FIELDS;
    worker_from_proxy.max_field_size += AS_HTTP_PROXY_EXTRA_FIELD_SIZE;
    worker_from_proxy.max_header_bytes += AS_HTTP_PROXY_EXTRA_BYTES;
    as_http_init(&proxy, &proxy_limits);
    direct.on_body = proxy.on_body = collect;
    direct.ctx = &d.body;
    proxy.ctx = &p.body;
    for (;;) {
        enum as_http_state sd, sp;

        d.host_added = false;   /* the client's and the proxy's views: as read */
        sd = one(&direct, in + pd, len - pd, chunk, &ud, describe_head, &d);
        sp = one(&proxy, in + pp, len - pp, len, &up, describe_head, &p);

        /* the same verdict on the same bytes */
        if (sd != sp || (sd == AS_HTTP_ERROR && direct.status != proxy.status))
            abort();
        if (sd != AS_HTTP_DONE)
            break;      /* refused, or the bytes end inside a request */
        if (ud != up || !same(&d.head, &p.head) || !same(&d.body, &p.body))
            abort();
        /* what the proxy forwards means the same to a worker */
        fwd.len = 0;
        forward(&proxy, &p.body, &fwd);
        f.host_added = !as_http_header(&proxy, "Host");
        d.host_added = f.host_added;
        reset(&d);
        describe(&direct, &d.head, d.host_added);
        worker_reads_forwarded(&fwd, &worker_from_proxy, &f);
        if (!same(&d.head, &f.head) || !same(&p.body, &f.body))
            abort();
        reset(&d);
        reset(&p);
        reset(&f);
        pd += ud;
        pp += up;
        as_http_next(&direct);
        as_http_next(&proxy);
    }
    as_http_free(&direct);
    as_http_free(&proxy);
    free(d.head.p);
    free(d.body.p);
    free(p.head.p);
    free(p.body.p);
    free(f.head.p);
    free(f.body.p);
    free(fwd.p);
    return 0;
}
