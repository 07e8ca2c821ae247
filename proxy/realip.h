/* The client's real address: what a trusted front server (real_ip_from)
 * says it is, in a PROXY protocol header on a `proxy_protocol` listen
 * (proxy_header.c) or in X-Forwarded-For (realip.c); anyone else's word
 * is ignored. The access log, the limits and what the workers get
 * (X-Forwarded-For, and Forwarded with the port) use it. */
#ifndef APPSTACK_PROXY_REALIP_H
#define APPSTACK_PROXY_REALIP_H

#include <stdbool.h>

struct conn;
struct exchange;
struct headw;

/* conn_new, for a proxy_protocol listen: the header first, then the
 * connection starts as any other (conn_begin). */
void proxy_header_start(struct conn *c);

/* Whether the peer of C (after any PROXY header) is a front server. */
bool realip_front(const struct conn *c);
/* x->client and x->client_port from X's connection, or from its
 * X-Forwarded-For when a front server sent it. */
void realip_request(struct exchange *x);
/* "Forwarded: for=...;proto=..." (RFC 7239) for the upstream: the client
 * as the proxy determined it, with its port when known. */
void realip_forwarded(const struct exchange *x, struct headw *h);

#endif
