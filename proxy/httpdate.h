/* HTTP dates (RFC 9110 IMF-fixdate). */
#ifndef APPSTACK_PROXY_HTTPDATE_H
#define APPSTACK_PROXY_HTTPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define HTTPDATE_LEN 29     /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* Writes HTTPDATE_LEN + 1 bytes. */
void httpdate_format(time_t t, char *out);
/* Accepts IMF-fixdate (what every client sends back); false otherwise. */
bool httpdate_parse(const char *s, size_t len, time_t *out);
/* The current date, formatted again only when the second changes. */
const char *httpdate_now(time_t now);

#endif
