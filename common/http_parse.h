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
 * 431, 501 for an unknown method or Transfer-Encoding, 505, or 500 when
 * on_body gave up) and the connection must be closed after the answer.
 * Requests an origin server does not take are errors too: CONNECT, and
 * targets other than "/..." (or "*" with OPTIONS).
 *
 * as_http_feed() takes every byte it is given while it reads a header
 * section or a body; it returns less than LEN only when it stops (head done,
 * message done, error), and never consumes a byte past the end of the
 * message, so pipelined requests stay with the caller.
 *
 * The header section goes through a line guard before llhttp sees it: it
 * enforces the size limits on raw bytes as sent and rejects bare CR, bare
 * LF, control characters and obs-fold, so the verdict on a request is the
 * same however its bytes are split across reads.
 *
 * The struct holds pointers to itself (llhttp's settings): do not copy or
 * move it after as_http_init(). */
#ifndef APPSTACK_HTTP_PARSE_H
#define APPSTACK_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "http_guard.h"
#include "http_reply.h"

#define AS_HTTP_MAX_HEADERS_HARD 1024  /* upper bound of limits.max_fields */

/* A chunk-size line (size and extensions, without CRLF) longer than this is
 * refused with 400: extensions are ignored, so they must not cost much. */
#define AS_HTTP_MAX_CHUNK_LINE 1024

/* Chunked framing (size lines and CRLFs) may exceed the body bytes it
 * carries by at most this much before the request is refused with 400. */
#define AS_HTTP_MAX_CHUNK_OVERHEAD (64 * 1024)

/* A limit left at 0 takes the default below (max_body 0 stays unlimited). */
#define AS_HTTP_DEFAULT_REQUEST_LINE 8190
#define AS_HTTP_DEFAULT_FIELDS 100
#define AS_HTTP_DEFAULT_FIELD_SIZE 8190
#define AS_HTTP_DEFAULT_HEADER_BYTES (64 * 1024)

/* Sizes are raw bytes as sent, CRLF not counted unless said. */
struct as_http_limits {
    size_t max_request_line;   /* "METHOD target HTTP/1.1": 414 beyond */
    size_t max_fields;         /* header count: 431 beyond (at most
                                  AS_HTTP_MAX_HEADERS_HARD) */
    size_t max_field_size;     /* one "Name: value" line: 431 beyond */
    size_t max_header_bytes;   /* header lines after the request line, each
                                  with its CRLF, plus the final empty line:
                                  431 beyond; also bounds chunked trailers */
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
    const char *name;   /* points into r->buf; NUL-terminated (as is value) */
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
    bool upgrade;               /* Connection: upgrade + Upgrade: asked for;
                                   not performed: answer it as a normal
                                   request (CONNECT is refused with 400) */
    uint64_t body_received;     /* decoded body bytes so far */

    /* Called with decoded body bytes. Return non-zero to abort (state
     * becomes AS_HTTP_ERROR with status 500). */
    int (*on_body)(void *ctx, const char *data, size_t len);
    void *ctx;

    /* Private: header section storage. Offsets into buf while it may still
     * move; pointers are set once the section is complete. */
    char *buf;
    size_t buf_len, buf_cap;
    struct as_http_header *hdr_store;
    size_t hdr_cap;
    int last_cb;
    size_t *hdr_off;            /* name and value offset of each header */
    size_t target_off, field_off, value_off;

    /* Private: framing state. */
    struct as_http_guard guard;
    int pause_reason;
    int body_phase;
    uint64_t body_left;         /* of the Content-Length body or the chunk */
    uint64_t body_announced;    /* sum of the chunk sizes seen */
    uint64_t framing;           /* chunked overhead bytes so far */
    size_t chunk_line;          /* bytes of the current chunk-size line */
    bool version_pending;       /* llhttp refused the version: judge the
                                   whole request line before answering */
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

#endif
