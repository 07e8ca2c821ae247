/* The header section of a request: llhttp's callbacks copy the fields into
 * r->buf, and once the section is complete the request is checked for what
 * llhttp lets through but RFC 9110/9112 refuse or leave ambiguous. Trailer
 * fields are not kept; their names are checked (RFC 9110 6.5.1). Private to
 * http_parse.c. */
#include <stdlib.h>
#include <string.h>

#include "http_fields.h"
#include "http_head.h"
#include "http_uri.h"

enum { CB_NONE, CB_FIELD, CB_VALUE };

static struct as_http_request *req(llhttp_t *p)
{
    return p->data;
}

/* Fails the request from inside a callback. */
static int cb_fail(struct as_http_request *r, int status, const char *why)
{
    r->status = status;
    r->error = why;
    return HPE_USER;
}

bool as_http_reserve(struct as_http_request *r, size_t need)
{
    /* the request line, the fields, and what the target's form adds */
    size_t max = 2 * r->limits.max_request_line + r->limits.max_header_bytes + 64;
    size_t cap = r->buf_cap ? r->buf_cap : 1024;
    char *nb;

    if (need <= r->buf_cap)
        return true;
    if (need > max)
        return false;
    while (cap < need)
        cap *= 2;
    if (cap > max)
        cap = max;
    nb = realloc(r->buf, cap);
    if (!nb)
        return false;
    r->buf = nb;
    r->buf_cap = cap;
    return true;
}

int as_http_append(struct as_http_request *r, const char *at, size_t n)
{
    if (n == 0)
        return 0;
    if (!as_http_reserve(r, r->buf_len + n))
        return cb_fail(r, 431, "header section too large to store");
    memcpy(r->buf + r->buf_len, at, n);
    r->buf_len += n;
    return 0;
}

static int append_nul(struct as_http_request *r)
{
    return as_http_append(r, "", 1);
}

/* One more header slot; a head may hold max_fields from the client plus
 * the Host an absolute-form target adds. */
static bool grow_headers(struct as_http_request *r)
{
    size_t cap = r->hdr_cap ? r->hdr_cap * 2 : 16, max = r->limits.max_fields + 1;
    struct as_http_header *h;
    size_t *off;

    if (cap > max)
        cap = max;
    if (cap <= r->hdr_cap)
        return false;
    h = realloc(r->hdr_store, cap * sizeof(*h));
    if (!h)
        return false;
    r->hdr_store = h;
    off = realloc(r->hdr_off, cap * 2 * sizeof(*off));
    if (!off)
        return false;
    r->hdr_off = off;
    r->hdr_cap = cap;
    return true;
}

/* Trailers come through the same callbacks once the body has started. */
static bool in_head(const struct as_http_request *r)
{
    return r->state == AS_HTTP_HEAD;
}

/* A trailer field's name: only its start is kept, enough to know it. */
static void trailer_name(struct as_http_request *r, const char *at, size_t n)
{
    size_t have = r->trailer_name_len, room = have < sizeof r->trailer_name ? sizeof r->trailer_name - have : 0;

    memcpy(r->trailer_name + (have < sizeof r->trailer_name ? have : 0), at, n < room ? n : room);
    r->trailer_name_len += n;   /* the true length, maybe past the copy */
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct as_http_request *r = req(p);

    if (r->last_cb != CB_FIELD) {
        r->field_off = r->buf_len;
        r->trailer_name_len = 0;
        r->last_cb = CB_FIELD;
    }
    if (!in_head(r)) {
        trailer_name(r, at, n);
        return 0;
    }
    return as_http_append(r, at, n);
}

/* llhttp checks names in its strict build only: check them here too. */
static int on_header_field_complete(llhttp_t *p)
{
    struct as_http_request *r = req(p);
    const unsigned char *c, *end;

    r->last_cb = CB_VALUE;
    if (!in_head(r)) {
        if (r->trailer_name_len <= sizeof r->trailer_name &&
            (as_http_field_flags(r->trailer_name, r->trailer_name_len) & AS_FIELD_NOT_TRAILER))
            return cb_fail(r, 400, "field not allowed in a trailer section");
        return 0;
    }
    c = (const unsigned char *)r->buf + r->field_off;
    end = (const unsigned char *)r->buf + r->buf_len;
    if (c == end)
        return cb_fail(r, 400, "empty header name");
    for (; c < end; c++)
        if (!as_http_tchar(*c))
            return cb_fail(r, 400, "invalid character in header name");
    r->value_off = r->buf_len + 1;
    return append_nul(r);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct as_http_request *r = req(p);

    return in_head(r) ? as_http_append(r, at, n) : 0;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

static int on_header_value_complete(llhttp_t *p)
{
    struct as_http_request *r = req(p);
    size_t i = r->n_headers, start = r->value_off;
    struct as_http_header *h;

    r->last_cb = CB_NONE;
    if (!in_head(r))
        return 0;
    while (r->buf_len > start && ows(r->buf[r->buf_len - 1]))
        r->buf_len--;
    while (start < r->buf_len && ows(r->buf[start]))
        start++;
    if (i == r->hdr_cap && !grow_headers(r))
        return cb_fail(r, 431, "too many header fields");
    h = &r->hdr_store[i];
    h->name_len = r->value_off - 1 - r->field_off;
    h->value_len = r->buf_len - start;
    r->hdr_off[2 * i] = r->field_off;
    r->hdr_off[2 * i + 1] = start;
    r->n_headers++;
    return append_nul(r);
}

void as_http_head_settings(llhttp_settings_t *s)
{
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_header_value_complete;
}

/* buf no longer moves: turn offsets into pointers. */
static void set_pointers(struct as_http_request *r)
{
    r->method = r->buf;
    r->target = r->buf + r->target_off;
    r->path = r->buf + r->path_off;
    r->query = r->has_query ? r->buf + r->query_off : NULL;
    r->headers = r->hdr_store;
    for (size_t i = 0; i < r->n_headers; i++) {
        r->hdr_store[i].name = r->buf + r->hdr_off[2 * i];
        r->hdr_store[i].value = r->buf + r->hdr_off[2 * i + 1];
    }
}

static bool value_is(const struct as_http_header *a, const struct as_http_header *b)
{
    return a->value_len == b->value_len && memcmp(a->value, b->value, a->value_len) == 0;
}

/* What one pass over the fields found. */
struct scan {
    size_t host;                /* index of Host, or SIZE_MAX */
    size_t te_fields, chunked, other, empty;
    const char *last;           /* the last Transfer-Encoding member */
    size_t last_len;
    bool expect;                /* 100-continue among the expectations */
};

/* RFC 9112 3.2: one Host, with a valid value. */
static int scan_host(struct as_http_request *r, struct scan *sc, size_t at, const struct as_http_header *h)
{
    if (sc->host != SIZE_MAX)
        return r->error = "more than one Host field", 400;
    if (!as_http_host_valid(h->value, h->value_len))
        return r->error = "invalid Host", 400;
    sc->host = at;
    return 0;
}

static void scan_te(struct scan *sc, const struct as_http_header *h)
{
    struct as_http_list l;
    const char *m;
    size_t n;

    sc->te_fields++;
    as_http_list_init(&l, h->value, h->value_len);
    while (as_http_list_next(&l, &m, &n)) {
        if (n == 0)
            sc->empty++;
        else if (as_http_name_is(m, n, "chunked"))
            sc->chunked++;
        else if (!as_http_name_is(m, n, "identity"))
            sc->other++;
        sc->last = m;
        sc->last_len = n;
    }
}

/* RFC 9110 5.3: a singleton field twice with different values is refused;
 * with the same value it is kept once (returns 1: drop it). */
static int singleton(struct as_http_request *r, size_t kept, const struct as_http_header *h)
{
    for (size_t j = 0; j < kept; j++) {
        const struct as_http_header *k = &r->headers[j];
        if (k->name_len != h->name_len || !as_ascii_caseeq(k->name, h->name, h->name_len))
            continue;
        if (!value_is(k, h))
            return r->error = "a singleton field twice with different values", -400;
        return 1;
    }
    return 0;
}

/* One pass: Host, Transfer-Encoding, Expect, singletons (a repeated one
 * with the same value dropped here). Returns 0 or an error status. */
static int scan_fields(struct as_http_request *r, struct scan *sc)
{
    size_t kept = 0;
    int rc;

    for (size_t i = 0; i < r->n_headers; i++) {
        const struct as_http_header *h = &r->headers[i];
        enum as_field_id id;
        unsigned flags = as_http_field_lookup(h->name, h->name_len, &id);

        if (id == AS_F_HOST && (rc = scan_host(r, sc, kept, h)))
            return rc;
        if (id == AS_F_TRANSFER_ENCODING)
            scan_te(sc, h);
        if (id == AS_F_EXPECT && as_http_list_has(h->value, h->value_len, "100-continue"))
            sc->expect = true;
        /* Host and Content-Length have their own, stricter rules */
        if ((flags & AS_FIELD_SINGLETON) && id != AS_F_HOST && id != AS_F_CONTENT_LENGTH) {
            rc = singleton(r, kept, h);
            if (rc < 0)
                return -rc;
            if (rc)
                continue;
        }
        r->headers[kept++] = *h;
    }
    r->n_headers = kept;
    return 0;
}

/* In absolute-form the target's authority is the Host, whatever the field
 * said (RFC 9112 3.2.2); added when there was none. */
static int absolute_host(struct as_http_request *r, struct scan *sc)
{
    struct as_http_header *host;

    if (r->form != AS_HTTP_ABSOLUTE_FORM)
        return 0;
    if (sc->host != SIZE_MAX) {
        host = &r->headers[sc->host];
    } else {
        if (r->n_headers == r->hdr_cap && !grow_headers(r))
            return r->error = "too many header fields", 431;
        r->headers = r->hdr_store;
        sc->host = r->n_headers;
        host = &r->headers[r->n_headers++];
        host->name = "Host";
        host->name_len = 4;
    }
    host->value = r->buf + r->authority_off;
    host->value_len = r->authority_len;
    return 0;
}

/* RFC 9112 6.1, 6.3, 7: the body is chunked when the codings end in one
 * "chunked"; "identity" before it (RFC 2616's no-op coding) is taken as
 * nothing. Refused with 400: Transfer-Encoding with Content-Length or in
 * HTTP/1.0 (the framing is faulty), an empty member, chunked twice or not
 * last (the length cannot be known). Refused with 501: codings we do not
 * implement, "gzip, chunked" or no chunked at all (6.1; appstack(7)'s
 * "unsupported Transfer-Encoding"). The connection closes after either. */
static int check_te(struct as_http_request *r, const struct scan *sc)
{
    if (!sc->te_fields)
        return (r->parser.flags & F_TRANSFER_ENCODING) ? r->error = "malformed header section", 400 : 0;
    if (r->content_length >= 0)
        return r->error = "both Content-Length and Transfer-Encoding", 400;
    if (r->http_minor == 0)
        return r->error = "Transfer-Encoding in an HTTP/1.0 request", 400;
    if (sc->empty)
        return r->error = "empty Transfer-Encoding member", 400;
    if (sc->chunked > 1 || (sc->chunked && !as_http_name_is(sc->last, sc->last_len, "chunked")))
        return r->error = "chunked twice or not the last coding", 400;
    /* llhttp must frame it as chunked too ("chunked<TAB>" is not to it). */
    if (sc->other || !sc->chunked || !r->chunked)
        return r->error = "unsupported Transfer-Encoding", 501;
    return 0;
}

static int check_length(struct as_http_request *r)
{
    const llhttp_t *p = &r->parser;
    uint64_t max = r->limits.max_body;

    if (!(p->flags & F_CONTENT_LENGTH))
        return 0;
    if (p->content_length > INT64_MAX || (max && p->content_length > max))
        return r->error = "request body too large", 413;
    return 0;
}

int as_http_head_finish(struct as_http_request *r)
{
    llhttp_t *p = &r->parser;
    struct scan sc = { .host = SIZE_MAX };
    int status;

    set_pointers(r);
    r->content_length = p->flags & F_CONTENT_LENGTH ? (int64_t)p->content_length : -1;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->upgrade = p->upgrade != 0;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    if ((status = scan_fields(r, &sc)) || (status = absolute_host(r, &sc)) || (status = check_te(r, &sc)) ||
        (status = check_length(r)))
        return status;
    /* headers[] is final now (absolute_host may have moved it) */
    r->host = sc.host != SIZE_MAX ? &r->headers[sc.host] : NULL;
    /* RFC 9110 10.1.1: only HTTP/1.1 clients wait for 100, and only
     * before a body. */
    r->expect_continue = sc.expect && r->http_minor == 1 && (r->content_length > 0 || r->chunked);
    return 0;
}
