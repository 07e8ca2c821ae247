/* The part of an upstream request head that follows from HTTP/1.1 alone:
 * pure (no I/O, no globals), so that the differential fuzzer
 * (tests/fuzz/fuzz_differential.c) can check that what the proxy forwards
 * means to a worker what the client's bytes meant. */
#ifndef APPSTACK_PROXY_FWD_HEAD_H
#define APPSTACK_PROXY_FWD_HEAD_H

#include "headw.h"
#include "http_parse.h"

/* The request line and the client's fields an upstream gets for R (CONN:
 * its Connection field, or NULL): the
 * target in origin-form (the parser cut the fragment and made an
 * absolute-form authority the Host), HTTP/1.1, a Host always (LOCAL_HOST
 * when the client named none: HTTP/1.0 may omit it, HTTP/1.1 must carry
 * one, RFC 9112 3.2), and no hop-by-hop field, none named in Connection,
 * no Content-Length, Expect, X-Forwarded-*, Forwarded, X-Request-ID or
 * Appstack-Worker (the proxy writes those itself). The caller adds its own
 * fields and the blank line. */
void fwd_request_head(struct headw *h, const struct as_http_request *r, const struct as_http_header *conn,
                      const char *local_host);

#endif
