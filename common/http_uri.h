/* Pieces of request targets that appstack-worker and appstack-proxy read
 * alike: percent-decoding (RFC 3986 2.1) and the Host value (RFC 9110 7.2). */
#ifndef APPSTACK_HTTP_URI_H
#define APPSTACK_HTTP_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum {
    AS_PCT_SLASH = 1,   /* an encoded "/" was decoded: one segment, not two */
    AS_PCT_NUL = 2,     /* a NUL (encoded or not) is in the result */
};

/* Decodes the %XX escapes of SRC (LEN bytes) into DST, which has room for
 * LEN bytes and may be SRC itself. Returns the decoded length, or -1 when a
 * "%" is not followed by two hex digits. *FLAGS (may be NULL) gets the
 * AS_PCT_* bits of what was seen. */
ssize_t as_pct_decode(const char *src, size_t len, char *dst, unsigned *flags);

/* True when every "%" of S is followed by two hex digits. */
bool as_pct_valid(const char *s, size_t len);

/* A Host field value: uri-host [ ":" port ], or empty (RFC 9110 7.2,
 * RFC 3986 3.2.2): a reg-name, an IPv4 address or a bracketed IP literal. */
bool as_http_host_valid(const char *s, size_t len);

#endif
