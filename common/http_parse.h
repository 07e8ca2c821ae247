/* HTTP/1.1 request parsing exactly by RFC 9110/9112, shared by
 * appstack-worker and appstack-proxy so that the two can never disagree
 * about what a request is or where it ends. One struct per connection,
 * reused for every request on it: no allocation per request.
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
 * 431, 501, 505, or 500 when on_body gave up) and the connection must be
 * closed after the answer.
 *
 * as_http_feed() takes every byte it is given while it reads a head or a
 * body; it returns less than LEN only when it stops (head done, message
 * done, error), and never consumes a byte past the end of the message, so
 * pipelined requests stay with the caller.
 *
 * Who reads what: a line guard (http_guard.c) bounds every line of the
 * head and trailers on raw bytes and refuses bare CR, bare LF, control
 * characters and obs-fold, so a verdict never depends on how the bytes were
 * split across reads. The request line (http_target.c) and chunk-size lines
 * (http_chunk.c) are read here, because llhttp 8.1 cannot read what RFC
 * 9112 allows in them: it knows a fixed list of methods, refuses obs-text in
 * a target in strict mode (and takes HTAB and FF there otherwise), and takes
 * no whitespace around chunk extensions. llhttp (strict build) reads the
 * header section, chunk data and trailers; it is handed a neutral request
 * line with the same version, and each chunk's size alone. The finished
 * head is then checked (http_head.c): Host, singleton fields,
 * Transfer-Encoding, Content-Length.
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

/* What appstack-proxy adds to a request it forwards (a Host, the
 * X-Forwarded trio, its address at the end of X-Forwarded-For): a worker
 * allows its proxy this much more, so that a request the proxy took within
 * the limits is never refused for what the proxy added. */
#define AS_HTTP_PROXY_EXTRA_FIELDS 8
#define AS_HTTP_PROXY_EXTRA_FIELD_SIZE 64
#define AS_HTTP_PROXY_EXTRA_BYTES 2048

/* Sizes are raw bytes as sent, CRLF not counted unless said. */
struct as_http_limits {
    size_t max_request_line;   /* "METHOD target HTTP/1.1": 414 beyond */
    size_t max_fields;         /* header count: 431 beyond (at most
                                  AS_HTTP_MAX_HEADERS_HARD) */
    size_t max_field_size;     /* one "Name: value" line with its CRLF:
                                  431 beyond */
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

/* RFC 9112 3.2. Authority-form is CONNECT's, and CONNECT is refused. */
enum as_http_form {
    AS_HTTP_ORIGIN_FORM,    /* "/path?query" */
    AS_HTTP_ABSOLUTE_FORM,  /* "http://host/path?query": the host is the Host */
    AS_HTTP_ASTERISK_FORM,  /* "*", OPTIONS only */
};

struct as_http_header {
    const char *name;   /* NUL-terminated, as is value */
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

    /* Valid from AS_HTTP_HEAD_DONE until as_http_next(). method and target
     * are NUL-terminated; path and query are not. */
    const char *method;         /* any token without lower case: "GET", "QUERY" */
    const char *target;         /* the request-target as sent, fragment and all */
    size_t target_len;
    enum as_http_form form;
    const char *path;           /* still percent-encoded (the escapes are
                                   well-formed), never empty: "/a%20b";
                                   "*" in asterisk-form; "/" for "http://h" */
    size_t path_len;
    const char *query;          /* after "?", up to a "#"; NULL without "?" */
    size_t query_len;
    int http_major, http_minor; /* 1.0 or 1.1 (1.2 to 1.9 are read as 1.1,
                                   RFC 9110 2.5) */
    struct as_http_header *headers;  /* as sent, except: in absolute-form
                                   Host is the target's authority (added when
                                   absent), and a repeated singleton field
                                   with the same value is kept once */
    size_t n_headers;
    const struct as_http_header *host;  /* the Host among headers, NULL
                                   without one: found by the head's own
                                   checks, so nobody scans for it again */
    int64_t content_length;     /* -1 when absent */
    bool chunked;               /* Transfer-Encoding: chunked */
    bool expect_continue;       /* HTTP/1.1, Expect: 100-continue and a body
                                   to come: the client waits for 100 */
    bool keep_alive;            /* connection may be reused after this one */
    bool upgrade;               /* Connection: upgrade + Upgrade: asked for;
                                   not performed: answer it as a normal
                                   request */
    uint64_t body_received;     /* decoded body bytes so far */

    /* Called with decoded body bytes. Return non-zero to abort (state
     * becomes AS_HTTP_ERROR with status 500). */
    int (*on_body)(void *ctx, const char *data, size_t len);
    void *ctx;

    /* Private: head storage ("METHOD\0TARGET\0[AUTHORITY\0]" then the
     * fields). Offsets into buf while it may still move; pointers are set
     * once the section is complete. */
    char *buf;
    size_t buf_len, buf_cap;
    struct as_http_header *hdr_store;
    size_t hdr_cap;
    int last_cb;
    size_t *hdr_off;            /* name and value offset of each header */
    size_t target_off, field_off, value_off;
    size_t path_off, query_off, authority_off, authority_len;
    bool has_query;

    /* Private: framing state. */
    struct as_http_guard guard;
    int pause_reason;
    int body_phase;
    uint64_t body_left;         /* of the Content-Length body or the chunk */
    uint64_t body_announced;    /* sum of the chunk sizes seen */
    uint64_t framing;           /* chunked overhead bytes so far */
    size_t chunk_line;          /* bytes of the current chunk-size line */
    int chunk_state;            /* where in it (http_chunk.c) */
    uint64_t chunk_size;
    char trailer_name[24];      /* the trailer field being read, cut short */
    size_t trailer_name_len;
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
