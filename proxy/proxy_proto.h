/* The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a
 * load balancer sends before the client's bytes on a `listen = ADDR
 * proxy_protocol`: the client's address and port as the balancer saw
 * them. Pure (no I/O, no globals), so it is fuzzed on its own
 * (tests/fuzz/fuzz_proxy_proto.c). */
#ifndef APPSTACK_PROXY_PROXY_PROTO_H
#define APPSTACK_PROXY_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PP_MAX 2048         /* longest header taken (v1: 107 bytes; v2: 16 + addresses + TLVs) */

struct pp_addr {
    int family;             /* AF_INET, AF_INET6, or AF_UNSPEC: no address (LOCAL, UNKNOWN, UNIX...) */
    unsigned char src[16];  /* 4 or 16 bytes, network order */
    uint16_t src_port;
};

/* The length of the PROXY header at the start of BUF (LEN bytes) with its
 * source in *OUT; 0 when the bytes so far are the start of one and more
 * must come; -1 when they are not a valid header. */
int pp_parse(const unsigned char *buf, size_t len, struct pp_addr *out);

#endif
