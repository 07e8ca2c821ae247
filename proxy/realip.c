/* The client's address for a request (see realip.h). */
#include "realip.h"
#include "exchange.h"

#include <arpa/inet.h>
#include <string.h>

#include "http_fields.h"
#include "netmask.h"

bool realip_front(const struct conn *c)
{
    const struct runtime *rt = srv.rt;

    return rt->n_fronts && as_nets_match_text(rt->fronts, rt->n_fronts, c->peer, strlen(c->peer));
}

/* S (N bytes) as an IPv4 or IPv6 address in text, into OUT. */
static bool ip_text(const char *s, size_t n, char *out, size_t size)
{
    unsigned char a[16];
    char tmp[64];

    if (n && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (!n || n >= sizeof tmp || n >= size)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(strchr(tmp, ':') ? AF_INET6 : AF_INET, tmp, a) != 1)
        return false;
    memcpy(out, tmp, n + 1);
    return true;
}

void realip_request(struct exchange *x)
{
    const struct as_http_header *xff;
    const struct runtime *rt = x->rt;
    struct as_http_list_rev l;
    const char *m;
    size_t n;

    memcpy(x->client, x->c->peer, sizeof x->client);
    x->client_port = x->c->peer_port;
    if (!rt->n_fronts || !as_nets_match_text(rt->fronts, rt->n_fronts, x->client, strlen(x->client)) ||
        !(xff = as_http_header(x->req, "X-Forwarded-For")))
        return;
    /* From the right: each front server appended the address it got the
     * request from; the first that is not a front is the client (nginx's
     * real_ip_recursive). An entry that is not an address ends the walk. */
    as_http_list_rev_init(&l, xff->value, xff->value_len);
    while (as_http_list_prev(&l, &m, &n)) {
        char addr[sizeof x->client];
        if (!ip_text(m, n, addr, sizeof addr))
            return;
        memcpy(x->client, addr, sizeof addr);
        x->client_port = 0;         /* not known past a front server */
        if (!as_nets_match_text(rt->fronts, rt->n_fronts, addr, strlen(addr)))
            return;
    }
}

void realip_forwarded(const struct exchange *x, struct headw *h)
{
    bool v6 = strchr(x->client, ':') != NULL;

    hw_put(h, "Forwarded: for=\"", 16);
    if (v6)
        hw_char(h, '[');
    hw_str(h, x->client);
    if (v6)
        hw_char(h, ']');
    if (x->client_port) {
        hw_char(h, ':');
        hw_u64(h, x->client_port);
    }
    hw_put(h, "\";proto=", 8);
    hw_str(h, exchange_scheme(x));
    hw_put(h, "\r\n", 2);
}
