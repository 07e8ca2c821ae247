/* libFuzzer target for the shared HTTP parser. Each input is parsed twice,
 * fed whole and fed a few bytes per read, and the two parses must agree on
 * every request (verdict, head, body, bytes used); the parser's feeding
 * contract is checked on the way. Build, from the source tree:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DLLHTTP_STRICT_MODE=1 \
 *     -Icommon -I/usr/share/include/llhttp tests/fuzz/fuzz_http_parse.c \
 *     common/http_parse.c common/http_head.c common/http_guard.c common/http_fields.c \
 *     common/http_uri.c common/http_reason.c /usr/share/llhttp/{llhttp,api,http}.c \
 *     -o fuzz_http_parse
 *   ./fuzz_http_parse -max_total_time=60 tests/fuzz/corpus/http_parse
 *
 * The first input byte picks the read size (low nibble, 1..16) and whether
 * small limits are used (bit 4), so the limits get exercised too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

struct digest {
    char *text;
    size_t len, cap;
};

static void put(struct digest *d, const void *data, size_t n)
{
    if (d->len + n > d->cap) {
        d->cap = (d->len + n) * 2 + 256;
        d->text = realloc(d->text, d->cap);
        if (!d->text)
            abort();
    }
    memcpy(d->text + d->len, data, n);
    d->len += n;
}

static void putn(struct digest *d, char tag, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%c%lld", tag, v);

    put(d, tmp, (size_t)n);
}

static int body_sink(void *ctx, const char *data, size_t len)
{
    put(ctx, data, len);
    return 0;
}

static void put_head(struct digest *d, const struct as_http_request *r)
{
    size_t i;

    put(d, r->method, strlen(r->method) + 1);
    put(d, r->target, r->target_len + 1);
    putn(d, 'v', r->http_major);
    putn(d, '.', r->http_minor);
    for (i = 0; i < r->n_headers; i++) {
        const struct as_http_header *h = &r->headers[i];

        if (h->name[h->name_len] || h->value[h->value_len])
            abort();
        if (as_http_header(r, h->name) == NULL)
            abort();
        put(d, h->name, h->name_len + 1);
        put(d, h->value, h->value_len + 1);
    }
    putn(d, 'l', r->content_length);
    putn(d, 'f', r->chunked | r->expect_continue << 1 | r->keep_alive << 2 | r->upgrade << 3);
}

/* The message is over: its verdict, and its size unless it was refused (how
 * far a refused request was read may depend on the reads). */
static void put_end(struct digest *d, const struct as_http_request *r, size_t bytes)
{
    putn(d, 's', r->state == AS_HTTP_ERROR ? r->status : 0);
    putn(d, 'b', r->state == AS_HTTP_ERROR ? 0 : (long long)bytes);
    if (r->state == AS_HTTP_ERROR && (r->status < 400 || !r->error))
        abort();
}

static void parse(const char *data, size_t len, size_t chunk,
                  const struct as_http_limits *l, struct digest *d)
{
    struct as_http_request r;
    size_t pos = 0, start = 0, avail = chunk < len ? chunk : len, c;

    as_http_init(&r, l);
    r.on_body = body_sink;
    r.ctx = d;
    while (r.state != AS_HTTP_ERROR) {
        if (pos == avail) {
            if (avail == len)
                break;
            avail = avail + chunk < len ? avail + chunk : len;
        }
        c = as_http_feed(&r, data + pos, avail - pos);
        if (c > avail - pos)
            abort();
        pos += c;
        if ((r.state == AS_HTTP_HEAD || r.state == AS_HTTP_BODY) && pos != avail)
            abort();
        if (r.state == AS_HTTP_HEAD_DONE) {
            put_head(d, &r);
            as_http_begin_body(&r);
        }
        if (r.state == AS_HTTP_DONE) {
            put_end(d, &r, pos - start);
            start = pos;
            as_http_next(&r);
        }
    }
    if (r.state == AS_HTTP_ERROR)
        put_end(d, &r, 0);
    as_http_free(&r);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const struct as_http_limits small = { 64, 4, 48, 160, 100 };
    struct digest whole = { 0 }, pieces = { 0 };
    const struct as_http_limits *l;
    size_t chunk;

    if (size < 1)
        return 0;
    chunk = (data[0] & 15) + 1;
    l = data[0] & 16 ? &small : NULL;
    parse((const char *)data + 1, size - 1, size, l, &whole);
    parse((const char *)data + 1, size - 1, chunk, l, &pieces);
    if (whole.len != pieces.len || (whole.len && memcmp(whole.text, pieces.text, whole.len) != 0))
        abort();
    free(whole.text);
    free(pieces.text);
    return 0;
}
