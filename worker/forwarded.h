/* The "for" of the last element of a Forwarded field (RFC 7239): the
 * client's address and port as the proxy in front of the worker says.
 * appstack-proxy writes one element, for="ADDR:PORT" (for="[V6]:PORT",
 * the port left out when it is not known). Pure (no I/O, no Python), so
 * it is fuzzed on its own (tests/fuzz/fuzz_forwarded.c). */
#ifndef APPSTACK_WORKER_FORWARDED_H
#define APPSTACK_WORKER_FORWARDED_H

#include <stdbool.h>
#include <stddef.h>

#define WK_FWD_ADDR_MAX 46          /* INET6_ADDRSTRLEN */

/* True when V (LEN bytes) has a last element whose for= is an IPv4 or
 * IPv6 address: it goes to ADDR (NUL-terminated, IPv6 without brackets),
 * its port to *PORT (0: none given). False for anything else ("unknown",
 * obfuscated names, bad syntax). */
bool wk_forwarded_for(const char *v, size_t len, char addr[WK_FWD_ADDR_MAX], unsigned *port);

#endif
