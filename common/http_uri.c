/* Percent-decoding and Host values (see http_uri.h). */
#include "http_uri.h"

#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

ssize_t as_pct_decode(const char *src, size_t len, char *dst, unsigned *flags)
{
    unsigned seen = 0;
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)src[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)src[i + 2]) : -1;

            if (lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (c == '/')
                seen |= AS_PCT_SLASH;
        }
        if (c == '\0')
            seen |= AS_PCT_NUL;
        dst[o++] = (char)c;
    }
    if (flags)
        *flags = seen;
    return (ssize_t)o;
}

bool as_pct_valid(const char *s, size_t len)
{
    const char *p = s, *end = s + len;

    while ((p = memchr(p, '%', (size_t)(end - p)))) {
        if (end - p < 3 || hexval((unsigned char)p[1]) < 0 || hexval((unsigned char)p[2]) < 0)
            return false;
        p += 3;
    }
    return true;
}

/* unreserved / sub-delims (RFC 3986 2.2, 2.3); "%" is checked apart. A
 * table, because every request's Host goes through it byte by byte. */
static const bool reg_name_chars[256] = {
    ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true,
    ['-'] = true, ['.'] = true, ['_'] = true, ['~'] = true, ['!'] = true, ['$'] = true,
    ['&'] = true, ['\''] = true, ['('] = true, [')'] = true, ['*'] = true, ['+'] = true,
    [','] = true, [';'] = true, ['='] = true,
};

static bool reg_name_char(unsigned char c)
{
    return reg_name_chars[c];
}

bool as_http_host_valid(const char *s, size_t len)
{
    const char *p = s, *end = s + len, *host_end;

    if (len == 0)
        return true;
    if (*p == '[') {
        /* IPv6address / IPvFuture: hex digits, ":" and "." or, for the
         * future forms, unreserved and sub-delims; a zone is "%25..." */
        host_end = memchr(p, ']', len);
        if (!host_end || host_end == p + 1)
            return false;
        for (p++; p < host_end; p++)
            if (!reg_name_char((unsigned char)*p) && *p != ':' && *p != '%')
                return false;
        if (!as_pct_valid(s + 1, (size_t)(host_end - s - 1)))
            return false;
        p = host_end + 1;
    } else {
        for (; p < end && *p != ':'; p++)
            if (!reg_name_char((unsigned char)*p) && *p != '%')
                return false;
        if (p == s || !as_pct_valid(s, (size_t)(p - s)))
            return false;   /* ":80" names no host */
    }
    if (p == end)
        return true;
    if (*p != ':')
        return false;
    for (p++; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}
