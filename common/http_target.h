/* The request line (RFC 9112 3), private to http_parse.c: read here rather
 * than by llhttp (see http_parse.h). */
#ifndef APPSTACK_HTTP_TARGET_H
#define APPSTACK_HTTP_TARGET_H

#include "http_parse.h"

/* r->buf holds the request line as received (empty lines before it and
 * its CRLF included). Checks it and leaves "METHOD\0TARGET\0" in buf, then
 * what the target's form needs (the absolute-form authority, a path that is
 * not in the target), with the version in r->http_major/minor and the
 * target's parts as offsets. Returns 0, or the status to answer with
 * r->error set. */
int as_http_request_line(struct as_http_request *r);

#endif
