/* Upgraded connections (WebSocket and any other protocol an upstream
 * accepts with 101 Switching Protocols): the request goes to the upstream
 * with its Upgrade and Connection fields, and once the upstream answers
 * 101 the client side and the upstream connection become a tunnel that
 * copies bytes both ways until either side ends, nothing moves for the
 * site's proxy_read_timeout, or the proxy stops. The exchange lives as
 * long as the tunnel; its access log entry is written at the close, with
 * the tunnel's duration and the bytes sent to the client. At most
 * max_tunnels upgrade requests and tunnels at once (503 beyond).
 *
 * The client side is an HTTP/1.1 connection, which the tunnel takes over,
 * or an HTTP/2 stream opened by an extended CONNECT (RFC 8441), whose
 * bytes are DATA frames under HTTP/2 flow control: the proxy asks the
 * upstream for an HTTP/1.1 WebSocket upgrade with a key of its own, checks
 * the upstream's Sec-WebSocket-Accept and answers the stream 200. */
#ifndef APPSTACK_PROXY_TUNNEL_H
#define APPSTACK_PROXY_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct exchange;
struct headw;
struct upconn;

/* Before X is forwarded: false when X asked for an upgrade beyond
 * max_tunnels (answered 503 then). An admitted upgrade request has its
 * x->tunnel (not open yet) and is counted until its exchange ends. */
bool tunnel_admit(struct exchange *x);
/* The Upgrade and Connection fields of an admitted upgrade request, for
 * the upstream (the proxy drops them as hop-by-hop otherwise), and the
 * Sec-WebSocket-Key of an HTTP/2 one. */
void tunnel_request_fields(const struct exchange *x, struct headw *h);
/* False when the upstream's final answer STATUS to X must not reach the
 * client: a 2xx to an HTTP/2 WebSocket request, which the client would
 * take for the tunnel's opening. */
bool tunnel_answer_ok(const struct exchange *x, int status);
/* The upstream answered 101: REST (LEN bytes) followed its head. */
void tunnel_start(struct upconn *u, const char *rest, size_t len);
/* X's tunnel is open: its entry is written however it ends. */
bool tunnel_opened(const struct exchange *x);
/* From exchange_finish. */
void tunnel_end(struct exchange *x);
/* Open tunnels and admitted upgrade requests. */
long tunnel_count(void);

/* HTTP/2 streams (h2.c). */
/* DATA from the client: false when the tunnel does not take it (its
 * request was answered otherwise, or it ended), and the bytes are
 * dropped; taken bytes are consumed (h2_consumed) as the upstream takes
 * them. */
bool tunnel_client_data(struct exchange *x, const char *p, size_t n);
/* The client ended its half of the stream (END_STREAM). */
void tunnel_client_eof(struct exchange *x);
/* nghttp2 took bytes of x->out for DATA frames: the upstream may be read
 * again. */
void tunnel_client_took(struct exchange *x);
/* TERM: an open tunnel ends now. */
void tunnel_stop(struct exchange *x);

/* h2.c, for the tunnels on its streams: N bytes of the client's DATA were
 * passed on (the client may send as much more), and the stream's reset
 * with an HTTP/2 error CODE (the exchange ends when it is sent). */
void h2_consumed(struct exchange *x, size_t n);
void h2_reset(struct exchange *x, uint32_t code);

#endif
