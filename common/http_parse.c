/* HTTP/1.1 request parsing: the line guard, the request line, llhttp and
 * the chunk-size lines in step (see http_parse.h). llhttp is paused where
 * the caller must get control (end of the header section, each chunk-size
 * line, end of the message), so the bytes it reports consumed are exact and
 * nothing past a message is taken. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_chunk.h"
#include "http_fields.h"
#include "http_head.h"
#include "http_parse.h"
#include "http_target.h"

enum { PAUSE_NONE, PAUSE_HEAD, PAUSE_CHUNK, PAUSE_DONE };
enum { BODY_LENGTH, BODY_CHUNK_LINE, BODY_CHUNK_DATA, BODY_TRAILERS };

static struct as_http_request *req(llhttp_t *p)
{
    return p->data;
}

static void fail(struct as_http_request *r, int status, const char *why)
{
    r->state = AS_HTTP_ERROR;
    r->status = status;
    r->error = why;
    r->keep_alive = false;
}

static int on_headers_complete(llhttp_t *p)
{
    struct as_http_request *r = req(p);

    if (r->state != AS_HTTP_HEAD)
        return 0;
    r->pause_reason = PAUSE_HEAD;
    return HPE_PAUSED;
}

static int on_chunk_header(llhttp_t *p)
{
    req(p)->pause_reason = PAUSE_CHUNK;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
    req(p)->pause_reason = PAUSE_DONE;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct as_http_request *r = req(p);

    r->body_received += n;
    if (r->on_body && r->on_body(r->ctx, at, n)) {
        r->status = 500;
        r->error = "request body consumer failed";
        return HPE_USER;
    }
    return 0;
}

static size_t or_default(size_t v, size_t dflt)
{
    return v ? v : dflt;
}

static void set_limits(struct as_http_request *r, const struct as_http_limits *l)
{
    struct as_http_limits *m = &r->limits;

    m->max_request_line = or_default(l ? l->max_request_line : 0, AS_HTTP_DEFAULT_REQUEST_LINE);
    m->max_fields = or_default(l ? l->max_fields : 0, AS_HTTP_DEFAULT_FIELDS);
    if (m->max_fields > AS_HTTP_MAX_HEADERS_HARD)
        m->max_fields = AS_HTTP_MAX_HEADERS_HARD;
    m->max_field_size = or_default(l ? l->max_field_size : 0, AS_HTTP_DEFAULT_FIELD_SIZE);
    m->max_header_bytes = or_default(l ? l->max_header_bytes : 0, AS_HTTP_DEFAULT_HEADER_BYTES);
    m->max_body = l ? l->max_body : 0;
}

/* Everything a message starts without; storage is kept. */
static void start_message(struct as_http_request *r)
{
    r->state = AS_HTTP_HEAD;
    r->status = 0;
    r->error = NULL;
    r->method = r->target = r->path = r->query = NULL;
    r->target_len = r->path_len = r->query_len = 0;
    r->form = AS_HTTP_ORIGIN_FORM;
    r->http_major = r->http_minor = 0;
    r->n_headers = 0;
    r->host = NULL;
    r->content_length = -1;
    r->chunked = r->expect_continue = r->keep_alive = r->upgrade = false;
    r->body_received = 0;
    r->buf_len = 0;
    r->last_cb = 0;
    r->target_off = r->field_off = r->value_off = 0;
    r->path_off = r->query_off = r->authority_off = r->authority_len = 0;
    r->has_query = false;
    as_http_guard_reset(&r->guard, true);
    r->pause_reason = PAUSE_NONE;
    r->body_left = r->body_announced = r->framing = 0;
    r->chunk_line = 0;
    r->chunk_state = 0;
    r->chunk_size = 0;
    r->trailer_name_len = 0;
}

void as_http_init(struct as_http_request *r, const struct as_http_limits *limits)
{
    memset(r, 0, sizeof(*r));
    set_limits(r, limits);
    llhttp_settings_init(&r->settings);
    as_http_head_settings(&r->settings);
    r->settings.on_headers_complete = on_headers_complete;
    r->settings.on_chunk_header = on_chunk_header;
    r->settings.on_message_complete = on_message_complete;
    r->settings.on_body = on_body;
    llhttp_init(&r->parser, HTTP_REQUEST, &r->settings);
    r->parser.data = r;
    start_message(r);
}

void as_http_free(struct as_http_request *r)
{
    free(r->buf);
    free(r->hdr_store);
    free(r->hdr_off);
    r->buf = NULL;
    r->hdr_store = r->headers = NULL;
    r->hdr_off = NULL;
    r->buf_cap = r->hdr_cap = 0;
}

void as_http_next(struct as_http_request *r)
{
    llhttp_reset(&r->parser);
    start_message(r);
}

static size_t consumed(const struct as_http_request *r, llhttp_errno_t e,
                       const char *data, size_t n)
{
    return e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&r->parser) - data);
}

/* llhttp refused the bytes. */
static void llhttp_failed(struct as_http_request *r, llhttp_errno_t e)
{
    if (r->status)          /* one of our callbacks */
        fail(r, r->status, r->error);
    else if (e == HPE_INVALID_TRANSFER_ENCODING)
        fail(r, 400, "chunked is not the last coding");   /* llhttp, at a field after chunked */
    else
        fail(r, 400, llhttp_get_error_reason(&r->parser));
}

/* Bytes llhttp is handed in place of ones it cannot read: it must take all
 * of them and stop (or pause) exactly at their end. */
static bool feed_synthetic(struct as_http_request *r, const char *s, size_t n, llhttp_errno_t expect)
{
    llhttp_errno_t e = llhttp_execute(&r->parser, s, n);

    if (e != expect || (e != HPE_OK && llhttp_get_error_pos(&r->parser) != s + n)) {
        if (e == HPE_OK || e == HPE_PAUSED)
            fail(r, 400, "malformed request");
        else
            llhttp_failed(r, e);
        return false;
    }
    return true;
}

/* The request line, up to and with its CRLF. */
static size_t feed_request_line(struct as_http_request *r, const char *data, size_t len)
{
    int gstatus, status;
    const char *gerror = NULL;
    size_t n = as_http_guard_scan(&r->guard, &r->limits, data, len, &gstatus, &gerror);

    if (as_http_append(r, data, n)) {
        fail(r, r->status, r->error);
        return n;
    }
    if (gstatus) {
        fail(r, gstatus, gerror);
        return n;
    }
    if (r->guard.in_request_line)
        return n;
    if ((status = as_http_request_line(r))) {
        fail(r, status, r->error);
        return n;
    }
    /* llhttp reads the fields with this neutral line's version. */
    if (r->http_minor == 0)
        feed_synthetic(r, "GET / HTTP/1.0\r\n", 16, HPE_OK);
    else
        feed_synthetic(r, "GET / HTTP/1.1\r\n", 16, HPE_OK);
    return n;
}

static void head_done(struct as_http_request *r, bool aligned)
{
    int status;

    if (!aligned) {
        fail(r, 400, "malformed header section");
        return;
    }
    if ((status = as_http_head_finish(r))) {
        fail(r, status, r->error);
        return;
    }
    r->state = AS_HTTP_HEAD_DONE;
}

/* Header fields, up to and with the empty line. */
static size_t feed_fields(struct as_http_request *r, const char *data, size_t len)
{
    int gstatus;
    const char *gerror = NULL;
    size_t n = as_http_guard_scan(&r->guard, &r->limits, data, len, &gstatus, &gerror);
    llhttp_errno_t e = HPE_OK;

    if (n)
        e = llhttp_execute(&r->parser, data, n);
    if (e == HPE_PAUSED && r->pause_reason == PAUSE_HEAD) {
        size_t used = consumed(r, e, data, n);

        head_done(r, used == n && r->guard.done);
        return used;
    }
    if (e != HPE_OK)
        llhttp_failed(r, e);
    else if (gstatus)
        fail(r, gstatus, gerror);
    else if (r->guard.done)
        fail(r, 400, "malformed header section");
    return r->state == AS_HTTP_ERROR ? consumed(r, e, data, n) : n;
}

static size_t feed_head(struct as_http_request *r, const char *data, size_t len)
{
    size_t n = 0;

    if (r->guard.in_request_line)
        n = feed_request_line(r, data, len);
    if (r->state == AS_HTTP_HEAD && !r->guard.in_request_line && n < len)
        n += feed_fields(r, data + n, len - n);
    return n;
}

void as_http_begin_body(struct as_http_request *r)
{
    if (r->state != AS_HTTP_HEAD_DONE)
        return;
    if (r->chunked) {
        r->body_phase = BODY_CHUNK_LINE;
    } else if (r->content_length > 0) {
        r->body_phase = BODY_LENGTH;
        r->body_left = (uint64_t)r->content_length;
    } else {
        r->state = AS_HTTP_DONE;
        return;
    }
    r->state = AS_HTTP_BODY;
    llhttp_resume(&r->parser);
}

static size_t min_size(size_t a, uint64_t b)
{
    return b < a ? (size_t)b : a;
}

/* llhttp paused on the chunk-size line it was handed. */
static void chunk_header(struct as_http_request *r)
{
    uint64_t size = r->parser.content_length, max = r->limits.max_body;

    r->framing += r->chunk_line;
    r->chunk_line = 0;
    r->chunk_state = 0;
    r->chunk_size = 0;
    if (size > UINT64_MAX - r->body_announced ||
        (max && r->body_announced + size > max)) {
        fail(r, 413, "request body too large");
        return;
    }
    r->body_announced += size;
    if (r->framing > AS_HTTP_MAX_CHUNK_OVERHEAD + r->body_announced) {
        fail(r, 400, "too much chunked framing for the data");
        return;
    }
    if (size == 0) {
        r->body_phase = BODY_TRAILERS;
        as_http_guard_reset(&r->guard, false);
    } else {
        r->body_phase = BODY_CHUNK_DATA;
        r->body_left = size + 2;    /* the data and its CRLF */
    }
    llhttp_resume(&r->parser);
}

/* A chunk-size line, read here (http_chunk.c); llhttp gets the size. */
static size_t chunk_line(struct as_http_request *r, const char *data, size_t len)
{
    char line[24];
    int n;

    for (size_t i = 0; i < len; i++) {
        if (++r->chunk_line > AS_HTTP_MAX_CHUNK_LINE + 2) {
            fail(r, 400, "chunk-size line too long");
            return i;
        }
        switch (as_chunk_byte(&r->chunk_state, &r->chunk_size, (unsigned char)data[i])) {
        case AS_CHUNK_MORE:
            continue;
        case AS_CHUNK_BAD:
            fail(r, 400, "malformed chunk-size line");
            return i;
        case AS_CHUNK_HUGE:
            fail(r, 400, "chunk size too large");
            return i;
        case AS_CHUNK_END:
            n = snprintf(line, sizeof line, "%" PRIx64 "\r\n", r->chunk_size);
            if (feed_synthetic(r, line, (size_t)n, HPE_PAUSED) && r->pause_reason == PAUSE_CHUNK)
                chunk_header(r);
            else if (r->state != AS_HTTP_ERROR)
                fail(r, 400, "malformed chunked body");
            return i + 1;
        }
    }
    return len;
}

/* How many bytes llhttp may see in the current body phase. */
static size_t body_window(struct as_http_request *r, const char *data, size_t len,
                          int *gstatus, const char **gerror)
{
    *gstatus = 0;
    if (r->body_phase == BODY_TRAILERS)
        return as_http_guard_scan(&r->guard, &r->limits, data, len, gstatus, gerror);
    return min_size(len, r->body_left);
}

/* llhttp took all N bytes of the window without pausing. */
static void body_progress(struct as_http_request *r, size_t n, int gstatus, const char *gerror)
{
    switch (r->body_phase) {
    case BODY_CHUNK_DATA:
        r->body_left -= n;
        if (!r->body_left) {
            r->framing += 2;
            r->body_phase = BODY_CHUNK_LINE;
        }
        break;
    case BODY_TRAILERS:
        if (gstatus)
            fail(r, gstatus, gerror);
        else if (r->guard.done)
            fail(r, 400, "malformed trailer section");
        break;
    default:
        r->body_left -= n;
    }
}

/* llhttp saw the end of the message after USED bytes of the window; after
 * trailers that must be where the guard saw the section end. */
static void message_done(struct as_http_request *r, bool whole_window)
{
    if (r->body_phase == BODY_TRAILERS && !(whole_window && r->guard.done))
        fail(r, 400, "malformed trailer section");
    else
        r->state = AS_HTTP_DONE;
}

/* One step of the body; returns the bytes consumed. */
static size_t body_step(struct as_http_request *r, const char *data, size_t len)
{
    int gstatus;
    const char *gerror = NULL;
    size_t n, used;
    llhttp_errno_t e = HPE_OK;

    if (r->body_phase == BODY_CHUNK_LINE)
        return chunk_line(r, data, len);
    n = body_window(r, data, len, &gstatus, &gerror);
    if (n)
        e = llhttp_execute(&r->parser, data, n);
    used = consumed(r, e, data, n);
    if (e == HPE_OK)
        body_progress(r, n, gstatus, gerror);
    else if (e == HPE_PAUSED && r->pause_reason == PAUSE_DONE)
        message_done(r, used == n);
    else if (e == HPE_PAUSED)
        fail(r, 400, "malformed chunked body");
    else
        llhttp_failed(r, e);
    return used;
}

static size_t feed_body(struct as_http_request *r, const char *data, size_t len)
{
    size_t total = 0, used;

    while (total < len && r->state == AS_HTTP_BODY) {
        used = body_step(r, data + total, len - total);
        total += used;
        if (!used && r->state == AS_HTTP_BODY)
            break;  /* cannot happen: every window takes at least a byte */
    }
    return total;
}

size_t as_http_feed(struct as_http_request *r, const char *data, size_t len)
{
    switch (r->state) {
    case AS_HTTP_HEAD:
        return len ? feed_head(r, data, len) : 0;
    case AS_HTTP_BODY:
        return feed_body(r, data, len);
    default:
        return 0;
    }
}

const struct as_http_header *as_http_header(const struct as_http_request *r, const char *name)
{
    size_t len = strlen(name), i;

    for (i = 0; i < r->n_headers; i++)
        if (r->headers[i].name_len == len && as_ascii_caseeq(r->headers[i].name, name, len))
            return &r->headers[i];
    return NULL;
}
