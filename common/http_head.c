/* The header section of a request: llhttp's callbacks copy the request line
 * and the headers into r->buf, and once the section is complete the request
 * is checked for what llhttp lets through but an origin server must refuse
 * (see http_parse.h). Private to http_parse.c. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_fields.h"
#include "http_head.h"

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

static bool grow_buf(struct as_http_request *r, size_t need)
{
    size_t max = r->limits.max_request_line + r->limits.max_header_bytes;
    size_t cap = r->buf_cap ? r->buf_cap : 1024;
    char *nb;

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

/* Appends a span to buf. 0 or HPE_USER. */
static int append(struct as_http_request *r, const char *at, size_t n)
{
    if (r->buf_cap - r->buf_len < n && !grow_buf(r, r->buf_len + n))
        return cb_fail(r, 431, "header section too large to store");
    memcpy(r->buf + r->buf_len, at, n);
    r->buf_len += n;
    return 0;
}

static int append_nul(struct as_http_request *r)
{
    return append(r, "", 1);
}

static bool grow_headers(struct as_http_request *r)
{
    size_t cap = r->hdr_cap ? r->hdr_cap * 2 : 16;
    struct as_http_header *h;
    size_t *off;

    if (cap > r->limits.max_fields)
        cap = r->limits.max_fields;
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

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    return append(req(p), at, n);
}

static int on_method_complete(llhttp_t *p)
{
    struct as_http_request *r = req(p);
    int rc = append_nul(r);

    r->target_off = r->buf_len;
    return rc;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    return append(req(p), at, n);
}

static int on_url_complete(llhttp_t *p)
{
    struct as_http_request *r = req(p);

    r->target_len = r->buf_len - r->target_off;
    return append_nul(r);
}

/* Trailers come through the same callbacks once the body has started: they
 * are parsed (and bounded by the guard) but not kept. */
static bool in_head(const struct as_http_request *r)
{
    return r->state == AS_HTTP_HEAD;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct as_http_request *r = req(p);

    if (!in_head(r))
        return 0;
    if (r->last_cb != CB_FIELD) {
        r->field_off = r->buf_len;
        r->last_cb = CB_FIELD;
    }
    return append(r, at, n);
}

/* llhttp checks names in its strict build only: check them here too. */
static int on_header_field_complete(llhttp_t *p)
{
    struct as_http_request *r = req(p);
    const unsigned char *c, *end;

    if (!in_head(r))
        return 0;
    c = (const unsigned char *)r->buf + r->field_off;
    end = (const unsigned char *)r->buf + r->buf_len;
    if (c == end)
        return cb_fail(r, 400, "empty header name");
    for (; c < end; c++)
        if (!as_http_tchar(*c))
            return cb_fail(r, 400, "invalid character in header name");
    r->value_off = r->buf_len + 1;
    r->last_cb = CB_VALUE;
    return append_nul(r);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct as_http_request *r = req(p);

    return in_head(r) ? append(r, at, n) : 0;
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
    r->last_cb = CB_NONE;
    return append_nul(r);
}

void as_http_head_settings(llhttp_settings_t *s)
{
    s->on_method = on_method;
    s->on_method_complete = on_method_complete;
    s->on_url = on_url;
    s->on_url_complete = on_url_complete;
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_header_value_complete;
}

/* buf no longer moves: turn offsets into pointers. */
static void set_pointers(struct as_http_request *r)
{
    size_t i;

    r->method = r->buf;
    r->target = r->buf + r->target_off;
    r->headers = r->hdr_store;
    for (i = 0; i < r->n_headers; i++) {
        r->hdr_store[i].name = r->buf + r->hdr_off[2 * i];
        r->hdr_store[i].value = r->buf + r->hdr_off[2 * i + 1];
    }
}

static bool name_is(const struct as_http_header *h, const char *name, size_t len)
{
    return h->name_len == len && as_ascii_caseeq(h->name, name, len);
}

#define NAME_IS(h, lit) name_is((h), lit, sizeof(lit) - 1)

/* Host, Transfer-Encoding and Expect. Returns 0 or an error status. */
static int check_fields(struct as_http_request *r, bool *te_seen)
{
    unsigned hosts = 0, tes = 0;
    const struct as_http_header *te = NULL;
    size_t i;

    for (i = 0; i < r->n_headers; i++) {
        const struct as_http_header *h = &r->headers[i];

        if (NAME_IS(h, "host")) {
            hosts++;
        } else if (NAME_IS(h, "transfer-encoding")) {
            tes++;
            te = h;
        } else if (NAME_IS(h, "expect")) {
            r->expect_continue = r->http_minor == 1 && as_http_name_is(h->value, h->value_len, "100-continue");
        }
    }
    *te_seen = tes > 0;
    if (hosts > 1)
        return r->error = "more than one Host header", 400;
    if (!tes)
        return (r->parser.flags & F_TRANSFER_ENCODING) ? r->error = "malformed header section", 400 : 0;
    if (r->content_length >= 0)
        return r->error = "both Content-Length and Transfer-Encoding", 400;
    /* llhttp reads "chunked<TAB>" as some other coding: both it and the
     * trimmed value must say chunked, or the body would go unframed. */
    if (tes > 1 || !r->chunked || !as_http_name_is(te->value, te->value_len, "chunked"))
        return r->error = "unsupported Transfer-Encoding", 501;
    return 0;
}

static int check_target(struct as_http_request *r)
{
    uint8_t method = r->parser.method;

    if (method == HTTP_CONNECT)
        return r->error = "CONNECT is not supported", 400;
    if (r->target[0] == '/')
        return 0;
    if (method == HTTP_OPTIONS && strcmp(r->target, "*") == 0)
        return 0;
    return r->error = "request target is not in origin form", 400;
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
    bool te = false;
    int status;

    set_pointers(r);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->content_length = p->flags & F_CONTENT_LENGTH ? (int64_t)p->content_length : -1;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->upgrade = p->upgrade != 0;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    if ((status = check_target(r)) || (status = check_fields(r, &te)) ||
        (status = check_length(r)))
        return status;
    /* HTTP/1.0 has no chunked coding: such a request is framed by its
     * sender's idea of it; serve it, then close. */
    if (te && r->http_minor == 0)
        r->keep_alive = false;
    return 0;
}
