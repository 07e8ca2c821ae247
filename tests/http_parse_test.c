/* Test driver for the shared HTTP parser: reads raw bytes on stdin, feeds
 * them to as_http_feed() the way a server does (a few bytes per read, or
 * all at once), and prints one JSON object per request seen, then a summary
 * line ("end"). tests/test_http_parse.py drives it.
 *
 *   http_parse_test [-c CHUNK[,CHUNK...]] [-l LINE,FIELDS,FIELD,HEADER,BODY] [-f N] [-h NAME]
 *   http_parse_test -r          (prints as_http_reason() of 100..599)
 *
 * -c: bytes that "arrive" per read (0: everything at once); with a list,
 *     the input is parsed once per entry, each run ending with its summary;
 * -l: the limits (0 = parser default); -f: on_body fails after N bytes;
 * -h: also print as_http_header(NAME) of each request.
 * Exit status 3 when the parser breaks its contract (consumes more than it
 * was given, or leaves bytes while it still wants more). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_parse.h"
#include "http_reply.h"

struct body {
    char *data;
    size_t len, cap;
    long fail_after;    /* -1: never */
};

static void die(const char *what)
{
    fprintf(stderr, "http_parse_test: %s\n", what);
    exit(3);
}

static int collect_body(void *ctx, const char *data, size_t len)
{
    struct body *b = ctx;

    if (b->fail_after >= 0 && b->len + len > (size_t)b->fail_after)
        return -1;
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->data = realloc(b->data, b->cap);
        if (!b->data)
            die("out of memory");
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static char *read_all(size_t *len)
{
    size_t cap = 65536;
    char *buf = malloc(cap);
    ssize_t n;

    *len = 0;
    if (!buf)
        die("out of memory");
    for (;;) {
        if (*len == cap && !(buf = realloc(buf, cap *= 2)))
            die("out of memory");
        n = read(0, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die(strerror(errno));
        if (n == 0)
            return buf;
        *len += (size_t)n;
    }
}

static void json_str(const char *s, size_t len)
{
    size_t i;

    putchar('"');
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static const char *state_name(enum as_http_state s)
{
    static const char *const names[] = { "head", "head_done", "body", "done", "error" };

    return names[s];
}

static const char *lookup_name;

static void print_lookup(const struct as_http_request *r)
{
    const struct as_http_header *h = as_http_header(r, lookup_name);

    printf(", \"lookup\": ");
    if (h)
        json_str(h->value, h->value_len);
    else
        printf("null");
}

static void print_reasons(void)
{
    int code;

    printf("{");
    for (code = 100; code < 600; code++)
        printf("%s\"%d\": \"%s\"", code > 100 ? ", " : "", code, as_http_reason(code));
    printf("}\n");
}

static void print_head(const struct as_http_request *r)
{
    size_t i;

    printf(", \"method\": ");
    json_str(r->method, strlen(r->method));
    printf(", \"target\": ");
    json_str(r->target, r->target_len);
    printf(", \"form\": \"%s\", \"path\": ", r->form == AS_HTTP_ORIGIN_FORM ? "origin"
                                          : r->form == AS_HTTP_ABSOLUTE_FORM ? "absolute" : "asterisk");
    json_str(r->path, r->path_len);
    printf(", \"query\": ");
    if (r->query)
        json_str(r->query, r->query_len);
    else
        printf("null");
    printf(", \"version\": \"%d.%d\", \"headers\": [", r->http_major, r->http_minor);
    for (i = 0; i < r->n_headers; i++) {
        const struct as_http_header *h = &r->headers[i];

        if (h->name[h->name_len] || h->value[h->value_len])
            die("header not NUL-terminated");
        printf("%s[", i ? ", " : "");
        json_str(h->name, h->name_len);
        printf(", ");
        json_str(h->value, h->value_len);
        printf("]");
    }
    printf("], \"content_length\": %lld, \"chunked\": %d, \"expect_continue\": %d, "
           "\"keep_alive\": %d, \"upgrade\": %d",
           (long long)r->content_length, r->chunked, r->expect_continue, r->keep_alive,
           r->upgrade);
    if (lookup_name)
        print_lookup(r);
}

static void print_message(const struct as_http_request *r, const struct body *b,
                          bool head_seen, size_t head_bytes, size_t bytes)
{
    printf("{\"state\": \"%s\", \"status\": %d, \"error\": ", state_name(r->state), r->status);
    if (r->error)
        json_str(r->error, strlen(r->error));
    else
        printf("null");
    if (head_seen) {
        print_head(r);
        printf(", \"head_bytes\": %zu", head_bytes);
    }
    printf(", \"body\": ");
    json_str(b->data ? b->data : "", b->len);
    printf(", \"body_received\": %llu, \"bytes\": %zu}\n",
           (unsigned long long)r->body_received, bytes);
}

static void parse_limits(const char *s, struct as_http_limits *l)
{
    unsigned long long v[5] = { 0 };

    if (sscanf(s, "%llu,%llu,%llu,%llu,%llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
        die("-l wants LINE,FIELDS,FIELD,HEADER,BODY");
    l->max_request_line = v[0];
    l->max_fields = v[1];
    l->max_field_size = v[2];
    l->max_header_bytes = v[3];
    l->max_body = v[4];
}

struct run {
    struct as_http_request r;
    struct body body;
    size_t pos, avail, msg_start, head_bytes;
    bool head_seen;
    unsigned moves;
    const char *buf0;
    const void *hdr0;
};

/* The message is over (done or error): report it, start the next one. */
static void end_message(struct run *x)
{
    print_message(&x->r, &x->body, x->head_seen, x->head_bytes, x->pos - x->msg_start);
    if (x->buf0 && (x->r.buf != x->buf0 || (const void *)x->r.hdr_store != x->hdr0))
        x->moves++;
    x->buf0 = x->r.buf;
    x->hdr0 = x->r.hdr_store;
    x->body.len = 0;
    x->head_seen = false;
    x->msg_start = x->pos;
}

static void after_feed(struct run *x)
{
    if (x->r.state == AS_HTTP_HEAD_DONE) {
        x->head_seen = true;
        x->head_bytes = x->pos - x->msg_start;
        as_http_begin_body(&x->r);
    }
    if (x->r.state == AS_HTTP_DONE) {
        end_message(x);
        as_http_next(&x->r);
    }
}

/* Parses DATA once, CHUNK bytes arriving per read, and prints the result. */
static void run_once(const char *data, size_t len, size_t chunk,
                     const struct as_http_limits *limits, long fail_after)
{
    struct run x = { .body.fail_after = fail_after };
    size_t c;

    as_http_init(&x.r, limits);
    x.r.on_body = collect_body;
    x.r.ctx = &x.body;
    x.avail = chunk && chunk < len ? chunk : len;
    while (x.r.state != AS_HTTP_ERROR) {
        if (x.pos == x.avail) {
            if (x.avail == len)
                break;
            x.avail = chunk && x.avail + chunk < len ? x.avail + chunk : len;
        }
        c = as_http_feed(&x.r, data + x.pos, x.avail - x.pos);
        if (c > x.avail - x.pos)
            die("consumed more than it was given");
        x.pos += c;
        if ((x.r.state == AS_HTTP_HEAD || x.r.state == AS_HTTP_BODY) && x.pos != x.avail)
            die("left bytes while still reading");
        after_feed(&x);
    }
    if (x.r.state == AS_HTTP_ERROR || x.pos != x.msg_start)
        end_message(&x);
    printf("{\"end\": true, \"chunk\": %zu, \"consumed\": %zu, \"total\": %zu, \"moves\": %u}\n",
           chunk, x.pos, len, x.moves);
    as_http_free(&x.r);
    free(x.body.data);
}

int main(int argc, char **argv)
{
    struct as_http_limits limits = { 0 };
    const char *chunks = "0";
    long fail_after = -1;
    size_t len;
    char *data, *end;
    int opt;

    while ((opt = getopt(argc, argv, "c:l:f:h:r")) != -1) {
        if (opt == 'c')
            chunks = optarg;
        else if (opt == 'l')
            parse_limits(optarg, &limits);
        else if (opt == 'f')
            fail_after = strtol(optarg, NULL, 10);
        else if (opt == 'h')
            lookup_name = optarg;
        else if (opt == 'r')
            return print_reasons(), 0;
        else
            die("usage: http_parse_test [-c CHUNK[,CHUNK...]] [-l LIMITS] [-f N] [-h NAME] < request");
    }
    data = read_all(&len);
    for (;;) {
        run_once(data, len, strtoul(chunks, &end, 10), &limits, fail_after);
        if (*end != ',')
            break;
        chunks = end + 1;
    }
    free(data);
    return 0;
}
