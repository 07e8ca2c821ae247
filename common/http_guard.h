/* The line guard in front of llhttp (private to http_parse.c): it walks a
 * header section (or a chunked trailer section) line by line and enforces
 * what llhttp either does not check or checks too late: limits on raw sizes
 * as sent, CRLF-only line endings, no control characters, no obs-fold, and
 * the version of the request line. Its verdict depends only on the bytes,
 * never on how they were split across reads. */
#ifndef APPSTACK_HTTP_GUARD_H
#define APPSTACK_HTTP_GUARD_H

#include <stdbool.h>
#include <stddef.h>

struct as_http_limits;

struct as_http_guard {
    size_t line_len;            /* bytes of the current line so far */
    size_t section;             /* header-section bytes so far */
    size_t lines;               /* header lines begun */
    unsigned blank_lines;       /* empty lines before the request line */
    size_t spaces;              /* in the request line */
    bool in_request_line;
    bool cr;                    /* last byte was a CR */
    bool done;                  /* the empty line ending the section seen */
    unsigned char tail_len;
    char tail[9];               /* last bytes of the request line */
};

/* Empty lines tolerated before a request line (some clients send a CRLF
 * after a body). */
#define AS_HTTP_GUARD_MAX_BLANK 8

/* WITH_REQUEST_LINE: a request's head; else a trailer section. */
void as_http_guard_reset(struct as_http_guard *g, bool with_request_line);

/* Looks at up to LEN bytes; returns how many are fine to hand to llhttp.
 * It stops after the empty line ending the section (g->done) or at the first
 * offending byte, with *STATUS and *ERROR set (*STATUS stays 0 otherwise).
 * The request line's version is judged at its end: 505 for HTTP/x.y other
 * than 1.0 and 1.1, 400 for a line without one. */
size_t as_http_guard_scan(struct as_http_guard *g, const struct as_http_limits *l,
                          const char *data, size_t len, int *status, const char **error);

/* True once the request line has been seen whole. */
bool as_http_guard_request_line_done(const struct as_http_guard *g);

/* Status for a request line llhttp refused at its version: 505 when it ends
 * in a well-formed "HTTP/d.d" that is not 1.0 or 1.1, else 400. Call only
 * once the request line is done. */
int as_http_guard_version_status(const struct as_http_guard *g);

#endif
