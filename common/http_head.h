/* Head storage and the checks of a finished head, private to http_parse.c
 * and http_target.c. */
#ifndef APPSTACK_HTTP_HEAD_H
#define APPSTACK_HTTP_HEAD_H

#include "http_parse.h"

/* Installs the callbacks that copy the header fields (and look at the
 * names of trailer fields). */
void as_http_head_settings(llhttp_settings_t *s);

/* Appends N bytes to r->buf; non-zero (r->status, r->error set) when the
 * head is too large to store. */
int as_http_append(struct as_http_request *r, const char *at, size_t n);

/* Makes room for CAP bytes in r->buf. */
bool as_http_reserve(struct as_http_request *r, size_t cap);

/* The section is complete: sets the public fields of R and checks them.
 * Returns 0, or the status to answer with r->error set. */
int as_http_head_finish(struct as_http_request *r);

#endif
