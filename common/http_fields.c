/* Field-name tables and list members (see http_fields.h). */
#include "http_fields.h"

#include <stdint.h>
#include <string.h>

const uint64_t as_http_tchar_bits[4] = {
    UINT64_C(0x03ff6cfa00000000), UINT64_C(0x57ffffffc7fffffe), 0, 0,
};

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

/* By length, so that a lookup compares only names of the right length:
 * every header of every request goes through here. Hop-by-hop and framing
 * fields; singletons (Host and Content-Length also route and frame); lists
 * that still cannot come late in a trailer. */
static const struct field {
    const char *name;
    unsigned char len, flags, id;
} fields[] = {
#define F(n, f, id) { n, sizeof n - 1, f, id }
    F("te", H | T, 0),
    F("host", S | T, AS_F_HOST), F("date", S, 0), F("from", S, 0),
    F("range", S, 0),
    F("expect", T, AS_F_EXPECT), F("cookie", T, 0),
    F("upgrade", H | T, 0), F("trailer", H | T, 0), F("referer", S, 0),
    F("if-range", S, 0),
    F("connection", H | T, AS_F_CONNECTION), F("keep-alive", H | T, 0), F("user-agent", S, 0),
    F("content-type", S, 0), F("max-forwards", S | T, 0),
    F("authorization", S | T, 0),
    F("content-length", S | T, AS_F_CONTENT_LENGTH),
    F("proxy-connection", H | T, 0),
    F("transfer-encoding", H | T, AS_F_TRANSFER_ENCODING), F("if-modified-since", S, 0),
    F("proxy-authorization", S | T, 0), F("if-unmodified-since", S, 0),
#undef F
};
#define N_FIELDS (sizeof fields / sizeof fields[0])
#define MAX_NAME 19

/* first[L]: the first entry of length L or more (kept by hand with the
 * table; tests/http1_unit_test.c looks every name up). */
static const unsigned char first[MAX_NAME + 2] = {
    0, 0, 0, 1, 1, 4, 5, 7, 10, 11, 11, 14, 14, 16, 17, 18, 18, 19, 21, 21, N_FIELDS,
};

unsigned as_http_field_lookup(const char *name, size_t len, enum as_field_id *id)
{
    if (id)
        *id = AS_F_OTHER;
    if (len < 2 || len > MAX_NAME)
        return 0;
    for (size_t i = first[len]; i < first[len + 1]; i++) {
        if (as_ascii_caseeq(fields[i].name, name, len)) {
            if (id)
                *id = (enum as_field_id)fields[i].id;
            return fields[i].flags;
        }
    }
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

void as_http_list_rev_init(struct as_http_list_rev *l, const char *v, size_t len)
{
    l->start = v;
    l->end = v + len;
}

bool as_http_list_prev(struct as_http_list_rev *l, const char **member, size_t *len)
{
    while (l->end > l->start) {
        const char *s = l->end, *e = l->end;

        while (s > l->start && s[-1] != ',')
            s--;
        l->end = s > l->start ? s - 1 : l->start;
        while (s < e && ows(*s))
            s++;
        while (e > s && ows(e[-1]))
            e--;
        if (e > s) {
            *member = s;
            *len = (size_t)(e - s);
            return true;
        }
    }
    return false;
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
