/* Accept-Encoding (see accept_enc.h). */
#include "accept_enc.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* "q=0.5" into thousandths; -1 when it is not a valid qvalue (RFC 9110 12.4.2). */
static int parse_q(const char *p, const char *end)
{
    int q, scale = 100;

    if (end - p < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=')
        return -1;
    p += 2;
    if (*p != '0' && *p != '1')
        return -1;
    q = (*p++ - '0') * 1000;
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9' && scale; p++, scale /= 10)
            q += (*p - '0') * scale;
    }
    if (p != end || q > 1000)
        return -1;
    return q;
}

int ae_choose(const char *v, size_t len, unsigned allowed)
{
    /* q in thousandths, -1 = not named */
    int q_gzip = -1, q_br = -1, q_star = -1, q_id = -1, best = AE_IDENTITY, best_q = 0;
    const char *p = v, *end = v ? v + len : v;

    if (!v)
        return AE_IDENTITY;
    while (p < end) {
        const char *e = memchr(p, ',', (size_t)(end - p)), *tok, *tend, *semi;
        int q = 1000;
        if (!e)
            e = end;
        tok = p;
        p = e + 1;
        while (tok < e && is_ows(*tok))
            tok++;
        if (tok >= e)
            continue;
        semi = memchr(tok, ';', (size_t)(e - tok));
        tend = semi ? semi : e;
        while (tend > tok && is_ows(tend[-1]))
            tend--;
        if (tend == tok)
            continue;
        /* parameters: only q counts; a bad q drops the element */
        for (const char *s = semi; s && s < e;) {
            const char *ps = s + 1, *pe = ps < e ? memchr(ps, ';', (size_t)(e - ps)) : NULL;
            if (!pe)
                pe = e;
            s = pe < e ? pe : NULL;
            while (ps < pe && is_ows(*ps))
                ps++;
            while (pe > ps && is_ows(pe[-1]))
                pe--;
            if (pe - ps >= 2 && (ps[0] == 'q' || ps[0] == 'Q') && ps[1] == '=') {
                q = parse_q(ps, pe);
                break;
            }
        }
        if (q < 0)
            continue;
        size_t n = (size_t)(tend - tok);
        if ((n == 4 && !strncasecmp(tok, "gzip", 4)) || (n == 6 && !strncasecmp(tok, "x-gzip", 6)))
            q_gzip = q_gzip < 0 || q < q_gzip ? q : q_gzip;     /* the stricter of two mentions */
        else if (n == 2 && !strncasecmp(tok, "br", 2))
            q_br = q_br < 0 || q < q_br ? q : q_br;
        else if (n == 1 && *tok == '*')
            q_star = q;
        else if (n == 8 && !strncasecmp(tok, "identity", 8))
            q_id = q;
    }
    if (q_gzip < 0)
        q_gzip = q_star;
    if (q_br < 0)
        q_br = q_star;
    if ((allowed & (1u << AE_BR)) && q_br > best_q) {
        best = AE_BR;
        best_q = q_br;
    }
    if ((allowed & (1u << AE_GZIP)) && q_gzip > best_q) {
        best = AE_GZIP;
        best_q = q_gzip;
    }
    /* identity is acceptable unless refused; the client may rank it higher */
    if (best != AE_IDENTITY && q_id > best_q)
        return AE_IDENTITY;
    return best;
}
