/* Forwarded's for= (see forwarded.h). */
#include "forwarded.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

bool wk_forwarded_for(const char *v, size_t len, char addr[WK_FWD_ADDR_MAX], unsigned *port)
{
    const char *el = v, *end = v + len, *p, *val = NULL, *ve = NULL;
    bool quoted = false;
    unsigned char bin[16];
    size_t n;

    /* The last element: after the last comma outside a quoted string. */
    for (p = v; p < end; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (*p == '\\' && quoted && p + 1 < end)
            p++;
        else if (*p == ',' && !quoted)
            el = p + 1;
    }
    if (quoted)
        return false;
    /* Its pairs, separated by ';'. */
    for (p = el; p < end && !val;) {
        while (p < end && (ows(*p) || *p == ';'))
            p++;
        const char *k = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        if (p >= end || *p != '=') {
            continue;
        }
        size_t kl = (size_t)(p - k);
        p++;
        const char *s = p, *e;
        if (p < end && *p == '"') {
            s = ++p;
            while (p < end && *p != '"') {
                if (*p == '\\')
                    return false;           /* no escapes in an address */
                p++;
            }
            if (p >= end)
                return false;
            e = p++;
        } else {
            while (p < end && *p != ';' && !ows(*p))
                p++;
            e = p;
        }
        if (kl == 3 && !strncasecmp(k, "for", 3)) {
            val = s;
            ve = e;
        }
    }
    if (!val)
        return false;
    *port = 0;
    if (val < ve && *val == '[') {
        const char *rb = memchr(val, ']', (size_t)(ve - val));
        if (!rb)
            return false;
        n = (size_t)(rb - val - 1);
        if (n == 0 || n >= WK_FWD_ADDR_MAX)
            return false;
        memcpy(addr, val + 1, n);
        addr[n] = '\0';
        if (inet_pton(AF_INET6, addr, bin) != 1)
            return false;
        p = rb + 1;
    } else {
        const char *colon = memchr(val, ':', (size_t)(ve - val));
        p = colon ? colon : ve;
        n = (size_t)(p - val);
        if (n == 0 || n >= WK_FWD_ADDR_MAX)
            return false;
        memcpy(addr, val, n);
        addr[n] = '\0';
        if (inet_pton(AF_INET, addr, bin) != 1)
            return false;
    }
    if (p < ve) {
        unsigned v2 = 0;
        if (*p != ':' || ++p == ve || ve - p > 5)
            return false;
        for (; p < ve; p++) {
            if (*p < '0' || *p > '9')
                return false;
            v2 = v2 * 10 + (unsigned)(*p - '0');
        }
        if (v2 > 65535)
            return false;
        *port = v2;
    }
    return true;
}
