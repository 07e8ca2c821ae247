/* libFuzzer target: chunked request bodies through the shared HTTP parser,
 * checked against a small reference decoder written from RFC 9112 7.1.
 *
 * The input (after its first byte) is the body of a chunked POST. Whenever
 * the parser accepts the message, the reference decoder must accept the
 * same bytes, end the message at the same byte and decode the same body:
 * a disagreement about where a chunked message ends is what request
 * smuggling is made of. The parser may be stricter than the reference
 * (limits, llhttp's extension grammar), never looser.
 *
 * The first byte picks the read size (low nibble, 1..16) and a small body
 * limit (bit 4). Built by `make fuzz` (tests/fuzz/fuzz.mk); replayed on
 * every file of tests/fuzz/corpus/chunked and tests/fuzz/regress/chunked by
 * `make check`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

static const char HEAD[] = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

struct body {
    char *data;
    size_t len, cap;
};

static void append(struct body *b, const char *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        if (!b->data)
            abort();
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static int on_body(void *ctx, const char *data, size_t len)
{
    append(ctx, data, len);
    return 0;
}

enum ref { REF_BAD = -1, REF_SHORT = 0, REF_DONE = 1 };

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A line's bytes before its CRLF may hold anything but CR, LF and NUL. */
static enum ref line_end(const char *d, size_t n, size_t *pos)
{
    while (*pos < n && d[*pos] != '\r' && d[*pos] != '\n' && d[*pos] != '\0')
        (*pos)++;
    if (*pos == n)
        return REF_SHORT;
    if (d[*pos] != '\r')
        return REF_BAD;
    if (*pos + 1 == n)
        return REF_SHORT;
    if (d[*pos + 1] != '\n')
        return REF_BAD;
    *pos += 2;
    return REF_DONE;
}

static enum ref ref_trailers(const char *d, size_t n, size_t *pos)
{
    for (;;) {
        size_t start = *pos;
        enum ref r = line_end(d, n, pos);

        if (r != REF_DONE || *pos - start == 2)
            return r;
    }
}

/* Decodes one chunked body from D; *USED is its length when REF_DONE. */
static enum ref ref_decode(const char *d, size_t n, struct body *out, size_t *used)
{
    size_t pos = 0;

    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;
        enum ref r;

        for (; pos < n && hexval((unsigned char)d[pos]) >= 0; pos++, digits++) {
            if (size >> 59)
                return REF_BAD;     /* no honest body needs 2^63 bytes */
            size = size * 16 + (uint64_t)hexval((unsigned char)d[pos]);
        }
        if (pos == n)
            return REF_SHORT;
        if (!digits)
            return REF_BAD;
        if ((r = line_end(d, n, &pos)) != REF_DONE)
            return r;
        if (size == 0) {
            if ((r = ref_trailers(d, n, &pos)) == REF_DONE)
                *used = pos;
            return r;
        }
        if (n - pos < size + 2)
            return n - pos <= size || (n - pos == size + 1 && d[n - 1] == '\r') ? REF_SHORT : REF_BAD;
        append(out, d + pos, (size_t)size);
        pos += (size_t)size;
        if (d[pos] != '\r' || d[pos + 1] != '\n')
            return REF_BAD;
        pos += 2;
    }
}

/* Feeds HEAD then the body CHUNK bytes at a time. Returns the parser's
 * state; *USED is how many body bytes the message took when it is done. */
static enum as_http_state parse(const char *d, size_t n, size_t chunk, const struct as_http_limits *l,
                                struct body *out, size_t *used)
{
    struct as_http_request r;
    size_t pos = 0, c;
    enum as_http_state st;

    as_http_init(&r, l);
    r.on_body = on_body;
    r.ctx = out;
    if (as_http_feed(&r, HEAD, sizeof HEAD - 1) != sizeof HEAD - 1 || r.state != AS_HTTP_HEAD_DONE || !r.chunked)
        abort();
    as_http_begin_body(&r);
    while (r.state == AS_HTTP_BODY && pos < n) {
        size_t want = n - pos < chunk ? n - pos : chunk;

        c = as_http_feed(&r, d + pos, want);
        if (c > want || (r.state == AS_HTTP_BODY && c != want))
            abort();
        pos += c;
    }
    if (r.state == AS_HTTP_DONE && r.body_received != out->len)
        abort();
    if (r.state == AS_HTTP_ERROR && (r.status < 400 || r.status > 599 || !r.error))
        abort();
    *used = pos;
    st = r.state;
    as_http_free(&r);
    return st;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const struct as_http_limits small = { 0, 0, 0, 256, 64 };
    struct body parsed = { 0 }, ref = { 0 };
    const char *d = (const char *)data + 1;
    size_t n, used = 0, ref_used = 0;
    enum as_http_state st;
    enum ref verdict;

    if (size < 1)
        return 0;
    n = size - 1;
    st = parse(d, n, (size_t)(data[0] & 15) + 1, data[0] & 16 ? &small : NULL, &parsed, &used);
    verdict = ref_decode(d, n, &ref, &ref_used);
    if (st == AS_HTTP_DONE) {
        /* Accepted: the reference must agree on the end and the bytes. */
        if (verdict != REF_DONE || ref_used != used || ref.len != parsed.len ||
            (ref.len && memcmp(ref.data, parsed.data, ref.len) != 0))
            abort();
    } else if (st == AS_HTTP_BODY && verdict == REF_DONE) {
        abort();        /* the message ended, the parser still wants more */
    }
    free(parsed.data);
    free(ref.data);
    return 0;
}
