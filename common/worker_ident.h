/* How a worker tells the proxy in front of it who it is, so that the proxy
 * never sends a request to a worker that is already busy with one of its
 * requests while another worker is idle (docs/proxy.md, "Dispatch").
 *
 * The proxy sends the field below (value "?") on its requests. A worker
 * that trusts the peer (forwarded_allow_ips) answers it on the first
 * request of each connection, before the app runs, with an interim
 *
 *     HTTP/1.1 100 Continue
 *     Appstack-Worker: TOKEN CAPACITY
 *
 * TOKEN: 16 hex digits, random per worker process, so that workers of
 * several hosts behind one address never look alike; CAPACITY: how many
 * requests the worker serves at once. A connection never changes worker,
 * so once per connection is enough, and a connection reused later says
 * nothing. The proxy consumes the interim response (it asked for it) and
 * removes the field from anything it forwards. Any other client that sends
 * the field gets a 1xx it must be able to ignore (RFC 9110, 15.2). */
#ifndef APPSTACK_WORKER_IDENT_H
#define APPSTACK_WORKER_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AS_WORKER_FIELD "Appstack-Worker"
#define AS_WORKER_TOKEN_LEN 16
#define AS_WORKER_CAPACITY_MAX 100000
#define AS_WORKER_ANSWER_MAX 96     /* bytes of the whole interim answer */

/* The interim answer for TOKEN and CAPACITY into BUF of SIZE bytes; its
 * length, 0 when it does not fit. */
size_t as_worker_ident_answer(char *buf, size_t size, uint64_t token, int capacity);
/* The field's value "TOKEN CAPACITY" (LEN bytes at V); false when V is not
 * one. */
bool as_worker_ident_parse(const char *v, size_t len, uint64_t *token, int *capacity);

#endif
