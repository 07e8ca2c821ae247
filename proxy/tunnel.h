/* Upgraded connections (WebSocket and any other protocol an upstream
 * accepts with 101 Switching Protocols): the request goes to the upstream
 * with its Upgrade and Connection fields, and once the upstream answers
 * 101 the client connection and the upstream connection become a tunnel
 * that copies bytes both ways until either side closes, nothing moves for
 * the site's proxy_read_timeout, or the proxy stops. The exchange lives
 * as long as the tunnel; its access log entry is written at the close,
 * with the tunnel's duration and the bytes sent to the client. At most
 * max_tunnels upgrade requests and tunnels at once (503 beyond). */
#ifndef APPSTACK_PROXY_TUNNEL_H
#define APPSTACK_PROXY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>

struct exchange;
struct headw;
struct upconn;

/* Before X is forwarded: false when X asked for an upgrade beyond
 * max_tunnels (answered 503 then). An admitted upgrade request is counted
 * until its exchange ends. */
bool tunnel_admit(struct exchange *x);
/* The Upgrade and Connection fields of an admitted upgrade request, for
 * the upstream (the proxy drops them as hop-by-hop otherwise). */
void tunnel_request_fields(const struct exchange *x, struct headw *h);
/* The upstream answered 101: REST (LEN bytes) followed its head. */
void tunnel_start(struct upconn *u, const char *rest, size_t len);
/* From exchange_finish. */
void tunnel_end(struct exchange *x);
/* Open tunnels and admitted upgrade requests. */
long tunnel_count(void);

#endif
