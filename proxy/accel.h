/* X-Accel-Redirect, as nginx does it: an upstream response carrying
 * "X-Accel-Redirect: /protected/file.pdf" is not sent to the client;
 * instead the proxy serves that path from the site's static locations
 * (sendfile, ranges, conditional requests, compression), typically from
 * an `internal = on` location that clients cannot request directly. The
 * upstream's Content-Type, Content-Disposition, Cache-Control, Expires,
 * Set-Cookie, Link and Content-Language go with the file, so
 * django-sendfile2's nginx backend works unchanged. */
#ifndef APPSTACK_PROXY_ACCEL_H
#define APPSTACK_PROXY_ACCEL_H

#include <stdbool.h>
#include <stddef.h>

struct exchange;
struct upconn;
struct headw;

struct accel {
    char *path;                 /* the header's value up to any '?' */
    size_t path_len;
    char *type;                 /* the upstream's Content-Type, or NULL */
    char *lines;                /* the upstream's fields that go with the file */
    size_t lines_len;
    bool cache_control;         /* the upstream gave one: the location's expires is not added */
};

/* From forward_response_head: true when U's response carries
 * X-Accel-Redirect; x->accel then holds it and the response's body is
 * read and dropped. */
bool accel_begin(struct exchange *x, struct upconn *u);
/* The upstream response is read: the file is served. */
void accel_serve(struct exchange *x);
/* From exchange_finish. */
void accel_end(struct exchange *x);
/* Is NAME (LEN bytes) one of the X-Accel-* fields that never reach a client? */
bool accel_field(const char *name, size_t len);

#endif
