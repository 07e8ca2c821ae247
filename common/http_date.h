/* Dates in HTTP/1 heads (RFC 9110 5.6.7 IMF-fixdate) and access logs
 * (common log format), written by hand: strftime's %a and %b follow the
 * locale, and a worker runs arbitrary Python that may call setlocale(). */
#ifndef APPSTACK_HTTP_DATE_H
#define APPSTACK_HTTP_DATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define AS_HTTP_DATE_LEN 29     /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define AS_CLF_DATE_LEN 26      /* "06/Nov/1994:08:49:37 +0100" */

/* Writes AS_HTTP_DATE_LEN bytes and a NUL: T in GMT. */
void as_http_date_format(time_t t, char *out);

/* Accepts IMF-fixdate, the only form a recipient must take and the one every
 * client sends back (If-Modified-Since); false for anything else. */
bool as_http_date_parse(const char *s, size_t len, time_t *out);

/* The IMF-fixdate of NOW, formatted again only when the second changes
 * (one buffer per process: callers use it before the next call). */
const char *as_http_date_now(time_t now);

/* Writes AS_CLF_DATE_LEN bytes and a NUL: T in local time with its offset,
 * as access logs have it. */
void as_clf_date_format(time_t t, char *out);

#endif
