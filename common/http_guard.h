/* The line guard (private to http_parse.c): it walks a request head (or a
 * chunked trailer section) line by line and enforces what llhttp either does
 * not check or checks too late: limits on raw sizes as sent, CRLF-only line
 * endings, no control characters (nor HTAB in the request line), no
 * obs-fold. It stops right after the request line, which the parser reads
 * itself. Its verdict depends only on the bytes, never on how they were
 * split across reads. */
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
    bool in_request_line;
    bool cr;                    /* last byte was a CR */
    bool done;                  /* the empty line ending the section seen */
};

/* Empty lines tolerated before a request line (some clients send a CRLF
 * after a body). */
#define AS_HTTP_GUARD_MAX_BLANK 8

/* WITH_REQUEST_LINE: a request's head; else a trailer section. */
void as_http_guard_reset(struct as_http_guard *g, bool with_request_line);

/* Looks at up to LEN bytes; returns how many are fine. It stops after the
 * CRLF of the request line (g->in_request_line turns false), after the
 * empty line ending the section (g->done), or at the first offending byte,
 * with *STATUS and *ERROR set (*STATUS stays 0 otherwise). */
size_t as_http_guard_scan(struct as_http_guard *g, const struct as_http_limits *l,
                          const char *data, size_t len, int *status, const char **error);

#endif
