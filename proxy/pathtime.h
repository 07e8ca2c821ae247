/* How long a worker takes to answer the requests of one method and path
 * (query string left out), learned from the answers. The balancer sends a
 * request behind a worker's current one only when that one is expected to
 * end soon (docs/proxy.md, "Dispatch"). A fixed table: no allocation, an
 * unknown path is expected to take forever. */
#ifndef APPSTACK_PROXY_PATHTIME_H
#define APPSTACK_PROXY_PATHTIME_H

#include <stddef.h>
#include <stdint.h>

uint64_t pathtime_key(const char *method, const char *target, size_t len);
/* Seconds a worker is expected to take; INFINITY when not known. */
double pathtime_expect(uint64_t key);
/* A worker took SECONDS. */
void pathtime_learn(uint64_t key, double seconds);

#endif
