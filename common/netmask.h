/* IP addresses and networks ("10.0.0.0/8", "::1", "*") as the config
 * names trusted peers: [supervisor] forwarded_allow_ips, [proxy]
 * real_ip_from. One parser, so that --check and the programs agree. */
#ifndef APPSTACK_NETMASK_H
#define APPSTACK_NETMASK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct as_net {
    int family;                 /* AF_INET, AF_INET6; AF_UNSPEC = any address ("*") */
    unsigned char addr[16];
    int prefix;
};

/* "1.2.3.4", "10.0.0.0/8", "2001:db8::/32", "::1" or "*". */
bool as_net_parse(const char *spec, struct as_net *n);

/* Whether ADDR (4 or 16 bytes of FAMILY) is in N; an IPv4-mapped IPv6
 * address matches as the IPv4 address it maps. */
bool as_net_match(const struct as_net *n, int family, const unsigned char *addr);
bool as_nets_match(const struct as_net *v, size_t n, int family, const unsigned char *addr);

/* The same for a socket address; false for anything but IPv4/IPv6. */
bool as_nets_match_sa(const struct as_net *v, size_t n, const struct sockaddr *sa);

/* The same for an address in text ("1.2.3.4", "::1", "[::1]"). */
bool as_nets_match_text(const struct as_net *v, size_t n, const char *s, size_t len);

#endif
