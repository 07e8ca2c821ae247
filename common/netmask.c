/* Trusted-peer networks (netmask.h). */
#include "netmask.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "config.h"

bool as_net_parse(const char *spec, struct as_net *n)
{
    char host[64];
    const char *slash = strchr(spec, '/');
    size_t hl = slash ? (size_t)(slash - spec) : strlen(spec);
    int maxp;

    memset(n, 0, sizeof *n);
    if (!strcmp(spec, "*")) {
        n->family = AF_UNSPEC;
        return true;
    }
    if (hl == 0 || hl >= sizeof host)
        return false;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, n->addr) == 1) {
        n->family = AF_INET;
        maxp = 32;
    } else if (inet_pton(AF_INET6, host, n->addr) == 1) {
        n->family = AF_INET6;
        maxp = 128;
    } else {
        return false;
    }
    n->prefix = maxp;
    if (slash) {
        long bits;
        if (!as_parse_long(slash + 1, 0, maxp, &bits))
            return false;
        n->prefix = (int)bits;
    }
    return true;
}

static bool prefix_match(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)whole))
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool as_net_match(const struct as_net *n, int family, const unsigned char *addr)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    if (n->family == AF_UNSPEC)
        return true;
    if (family == AF_INET6 && n->family == AF_INET && !memcmp(addr, mapped, sizeof mapped))
        return prefix_match(n->addr, addr + 12, n->prefix);
    return n->family == family && prefix_match(n->addr, addr, n->prefix);
}

bool as_nets_match(const struct as_net *v, size_t n, int family, const unsigned char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (as_net_match(&v[i], family, addr))
            return true;
    return false;
}

bool as_nets_match_sa(const struct as_net *v, size_t n, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return as_nets_match(v, n, AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return as_nets_match(v, n, AF_INET6, (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool as_nets_match_text(const struct as_net *v, size_t n, const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 2];
    unsigned char addr[16];

    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        return as_nets_match(v, n, AF_INET, addr);
    if (inet_pton(AF_INET6, buf, addr) == 1)
        return as_nets_match(v, n, AF_INET6, addr);
    return false;
}
