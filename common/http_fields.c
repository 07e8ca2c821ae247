/* Field-name tables and list members (see http_fields.h). */
#include "http_fields.h"

#include <stdint.h>
#include <string.h>

/* One bit per byte value: ALPHA, DIGIT and !#$%&'*+-.^_`|~ (names are
 * checked byte by byte on every request, so no strchr). */
static const uint64_t tchar_bits[4] = {
    UINT64_C(0x03ff6cfa00000000), UINT64_C(0x57ffffffc7fffffe), 0, 0,
};

bool as_http_tchar(unsigned char c)
{
    return (tchar_bits[c >> 6] >> (c & 63)) & 1;
}

bool as_http_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!as_http_tchar((unsigned char)s[i]))
            return false;
    return true;
}

bool as_ascii_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i] && as_ascii_lower(a[i]) != as_ascii_lower(b[i]))
            return false;
    return true;
}

bool as_http_name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && as_ascii_caseeq(name, lit, len);
}

#define H AS_FIELD_HOP_BY_HOP
#define S AS_FIELD_SINGLETON
#define T AS_FIELD_NOT_TRAILER

static const struct field {
    const char *name;
    unsigned char len, flags;
} fields[] = {
#define F(n, f) { n, sizeof n - 1, f }
    /* hop-by-hop and framing */
    F("connection", H | T), F("keep-alive", H | T), F("proxy-connection", H | T), F("te", H | T),
    F("transfer-encoding", H | T), F("upgrade", H | T), F("trailer", H | T),
    /* singletons; Host and Content-Length also route and frame */
    F("host", S | T), F("content-length", S | T), F("content-type", S), F("authorization", S | T),
    F("proxy-authorization", S | T), F("if-modified-since", S), F("if-unmodified-since", S),
    F("if-range", S), F("range", S), F("max-forwards", S | T), F("date", S), F("from", S),
    F("referer", S), F("user-agent", S),
    /* lists that still cannot come late */
    F("expect", T), F("cookie", T),
#undef F
};

unsigned as_http_field_flags(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i].len == len && as_ascii_caseeq(fields[i].name, name, len))
            return fields[i].flags;
    return 0;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

void as_http_list_init(struct as_http_list *l, const char *v, size_t len)
{
    l->p = v;
    l->end = v + len;
    l->done = false;
}

bool as_http_list_next(struct as_http_list *l, const char **member, size_t *len)
{
    const char *s = l->p, *p = s, *e;

    if (l->done)
        return false;
    while (p < l->end && *p != ',')
        p++;
    e = p;
    while (s < e && ows(*s))
        s++;
    while (e > s && ows(e[-1]))
        e--;
    *member = s;
    *len = (size_t)(e - s);
    if (p < l->end)
        l->p = p + 1;
    else
        l->done = true;
    return true;
}

bool as_http_list_has_n(const char *v, size_t vlen, const char *token, size_t len)
{
    struct as_http_list l;
    const char *m;
    size_t n;

    as_http_list_init(&l, v, vlen);
    while (as_http_list_next(&l, &m, &n))
        if (n && n == len && as_ascii_caseeq(m, token, len))
            return true;
    return false;
}
