/* Strict HTTP/1.1 request parsing shared by appstack-worker and
 * appstack-proxy (llhttp underneath), so that the two can never disagree
 * about where a request ends. One struct per connection, reused for every
 * request on it: no allocation per request.
 *
 * Use:
 *   as_http_init(&r, &limits) once per connection;
 *   feed bytes with as_http_feed(); it returns how many it consumed and
 *   stops after the header section (state AS_HTTP_HEAD_DONE) so the caller
 *   can look at the headers (100-continue, body size) before the body;
 *   then feed again: body bytes arrive through r.on_body (chunked decoded),
 *   and the state becomes AS_HTTP_DONE at the end of the message;
 *   as_http_next() before the next request on the same connection (it keeps
 *   bytes already fed but not consumed: the caller re-feeds the unconsumed
 *   tail, which is how pipelining works).
 * Any error: state AS_HTTP_ERROR, r.status is what to answer (400, 413, 414,
 * 431, 501, 505) and the connection must be closed after the answer. */
#ifndef APPSTACK_HTTP_PARSE_H
#define APPSTACK_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#define AS_HTTP_MAX_HEADERS_HARD 1024  /* upper bound of limits.max_fields */

struct as_http_limits {
    size_t max_request_line;   /* method + target + version: 414 beyond */
    size_t max_fields;         /* header count: 431 beyond */
    size_t max_field_size;     /* one "Name: value" line: 431 beyond */
    size_t max_header_bytes;   /* whole header section: 431 beyond */
    uint64_t max_body;         /* 413 beyond; 0 = unlimited */
};

enum as_http_state {
    AS_HTTP_HEAD,       /* reading request line and headers */
    AS_HTTP_HEAD_DONE,  /* headers parsed; body (if any) not yet */
    AS_HTTP_BODY,       /* reading the body */
    AS_HTTP_DONE,       /* message complete */
    AS_HTTP_ERROR,
};

struct as_http_header {
    const char *name;   /* points into r->buf; not NUL-terminated */
    size_t name_len;
    const char *value;  /* leading/trailing whitespace removed */
    size_t value_len;
};

struct as_http_request {
    llhttp_t parser;
    llhttp_settings_t settings;
    struct as_http_limits limits;
    enum as_http_state state;
    int status;                 /* error status when state == AS_HTTP_ERROR */
    const char *error;          /* short reason for the log */

    /* Valid from AS_HTTP_HEAD_DONE until as_http_next(). Strings point into
     * buf and are NUL-terminated. */
    const char *method;         /* "GET" */
    const char *target;         /* raw request-target, "/a%20b?x=1" */
    size_t target_len;
    int http_major, http_minor;
    struct as_http_header *headers;
    size_t n_headers;
    int64_t content_length;     /* -1 when absent */
    bool chunked;               /* Transfer-Encoding: chunked */
    bool expect_continue;       /* Expect: 100-continue */
    bool keep_alive;            /* connection may be reused after this one */
    bool upgrade;               /* Connection: upgrade / CONNECT (not supported) */
    uint64_t body_received;     /* decoded body bytes so far */

    /* Called with decoded body bytes. Return non-zero to abort (state
     * becomes AS_HTTP_ERROR with status 500). */
    int (*on_body)(void *ctx, const char *data, size_t len);
    void *ctx;

    /* Private: header section storage. */
    char *buf;
    size_t buf_len, buf_cap;
    struct as_http_header *hdr_store;
    size_t hdr_cap;
    int last_cb;
};

void as_http_init(struct as_http_request *r, const struct as_http_limits *limits);
void as_http_free(struct as_http_request *r);

/* Consumes up to LEN bytes; returns how many were consumed. Stops early at
 * AS_HTTP_HEAD_DONE, AS_HTTP_DONE and AS_HTTP_ERROR. */
size_t as_http_feed(struct as_http_request *r, const char *data, size_t len);

/* After AS_HTTP_HEAD_DONE: continue into the body. */
void as_http_begin_body(struct as_http_request *r);

/* After AS_HTTP_DONE: ready for the next request on the connection. */
void as_http_next(struct as_http_request *r);

/* Case-insensitive lookup of the first header called NAME, or NULL. */
const struct as_http_header *as_http_header(const struct as_http_request *r, const char *name);

/* Reason phrase for a status code ("Not Found"). */
const char *as_http_reason(int status);

#endif
