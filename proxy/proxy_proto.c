/* PROXY protocol v1 and v2 headers (see proxy_proto.h). */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

#define V1_MAX 107

/* A decimal port without sign or leading zeros ("0" itself is fine). */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
    unsigned v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN ...\r\n". */
static int parse_v1(const unsigned char *buf, size_t len, struct pp_addr *out)
{
    const char *p = (const char *)buf, *crlf = NULL, *f[6];
    size_t fl[6], nf = 0, end;
    char tmp[64];
    int family;

    for (size_t i = 0; i + 1 < len && i + 1 < V1_MAX; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n') {
            crlf = p + i;
            break;
        }
    }
    if (!crlf)
        return len >= V1_MAX ? -1 : 0;
    end = (size_t)(crlf - p);
    /* fields separated by single spaces */
    for (size_t i = 0, start = 0; i <= end; i++) {
        if (i == end || p[i] == ' ') {
            if (nf == 6)
                return -1;
            f[nf] = p + start;
            fl[nf++] = i - start;
            start = i + 1;
        } else if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e) {
            return -1;
        }
    }
    if (nf < 2 || fl[0] != 5 || memcmp(f[0], "PROXY", 5))
        return -1;
    memset(out, 0, sizeof *out);
    if (fl[1] == 7 && !memcmp(f[1], "UNKNOWN", 7)) {
        out->family = AF_UNSPEC;      /* the rest of the line is ignored */
        return (int)end + 2;
    }
    if (nf != 6 || fl[1] != 4 || (memcmp(f[1], "TCP4", 4) && memcmp(f[1], "TCP6", 4)))
        return -1;
    family = f[1][3] == '4' ? AF_INET : AF_INET6;
    for (int k = 2; k <= 3; k++) {
        unsigned char a[16];
        if (!fl[k] || fl[k] >= sizeof tmp)
            return -1;
        memcpy(tmp, f[k], fl[k]);
        tmp[fl[k]] = '\0';
        if (inet_pton(family, tmp, k == 2 ? out->src : a) != 1)
            return -1;
    }
    uint16_t dport;
    if (parse_port(f[4], fl[4], &out->src_port) < 0 || parse_port(f[5], fl[5], &dport) < 0)
        return -1;
    out->family = family;
    return (int)end + 2;
}

static int parse_v2(const unsigned char *buf, size_t len, struct pp_addr *out)
{
    size_t body, need;

    if (len < 16)
        return 0;
    if ((buf[12] >> 4) != 2 || (buf[12] & 0xF) > 1)
        return -1;              /* version 2; LOCAL or PROXY */
    body = (size_t)buf[14] << 8 | buf[15];
    need = 16 + body;
    if (need > PP_MAX)
        return -1;
    if (len < need)
        return 0;
    memset(out, 0, sizeof *out);
    out->family = AF_UNSPEC;
    if ((buf[12] & 0xF) == 0)
        return (int)need;       /* LOCAL: the balancer's own connection (a health check) */
    switch (buf[13]) {
    case 0x11:                  /* TCP over IPv4 */
        if (body < 12)
            return -1;
        out->family = AF_INET;
        memcpy(out->src, buf + 16, 4);
        out->src_port = (uint16_t)(buf[24] << 8 | buf[25]);
        break;
    case 0x21:                  /* TCP over IPv6 */
        if (body < 36)
            return -1;
        out->family = AF_INET6;
        memcpy(out->src, buf + 16, 16);
        out->src_port = (uint16_t)(buf[48] << 8 | buf[49]);
        break;
    default:                    /* UNSPEC, UDP, unix: no address we use */
        break;
    }
    return (int)need;
}

int pp_parse(const unsigned char *buf, size_t len, struct pp_addr *out)
{
    static const char v1_sig[] = "PROXY ";
    size_t n;

    if (len == 0)
        return 0;
    if (buf[0] == 'P') {
        n = len < 6 ? len : 6;
        if (memcmp(buf, v1_sig, n))
            return -1;
        return len < 6 ? 0 : parse_v1(buf, len, out);
    }
    n = len < 12 ? len : 12;
    if (memcmp(buf, v2_sig, n))
        return -1;
    return len < 12 ? 0 : parse_v2(buf, len, out);
}
