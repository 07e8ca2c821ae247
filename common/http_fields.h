/* Field names and values of HTTP/1 messages that appstack-worker and
 * appstack-proxy must treat alike: tokens, the tables of connection-specific
 * (hop-by-hop), singleton and never-in-a-trailer fields, and list members. */
#ifndef APPSTACK_HTTP_FIELDS_H
#define APPSTACK_HTTP_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* RFC 9110 5.6.2 tchar: one bit per byte value (names are checked byte by
 * byte on every request, so no strchr, and inline). */
extern const uint64_t as_http_tchar_bits[4];

static inline bool as_http_tchar(unsigned char c)
{
    return (as_http_tchar_bits[c >> 6] >> (c & 63)) & 1;
}

/* 1*tchar */
bool as_http_token(const char *s, size_t len);

/* What the tables say about a field name (any case). */
enum {
    /* Connection-specific (RFC 9110 7.6.1) or framing: never passed on from
     * one connection to the next; a server writes its own. */
    AS_FIELD_HOP_BY_HOP = 1,
    /* A single member by its grammar (RFC 9110 5.3): two lines with
     * different values make a request ambiguous. */
    AS_FIELD_SINGLETON = 2,
    /* Decides framing, routing, the connection or who is asking: refused
     * in a trailer section (RFC 9110 6.5.1), where it could only mislead. */
    AS_FIELD_NOT_TRAILER = 4,
};

/* The fields the parser and the servers look for by name. */
enum as_field_id {
    AS_F_OTHER, AS_F_HOST, AS_F_CONTENT_LENGTH, AS_F_TRANSFER_ENCODING, AS_F_EXPECT, AS_F_CONNECTION,
};

/* The AS_FIELD_* bits of NAME; *ID (may be NULL) gets which field it is. */
unsigned as_http_field_lookup(const char *name, size_t len, enum as_field_id *id);

static inline unsigned as_http_field_flags(const char *name, size_t len)
{
    return as_http_field_lookup(name, len, NULL);
}

static inline bool as_http_hop_by_hop(const char *name, size_t len)
{
    return as_http_field_flags(name, len) & AS_FIELD_HOP_BY_HOP;
}

/* ASCII case folding. Not <ctype.h> nor strcasecmp(): they follow the
 * locale, which an app may set inside a worker (in a Turkish locale "I" is
 * not the upper case of "i"). */
static inline char as_ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static inline char as_ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - ('a' - 'A')) : c;
}

/* Case-insensitive equality of N bytes. */
bool as_ascii_caseeq(const char *a, const char *b, size_t n);

/* Case-insensitive equality of NAME (LEN bytes) with the NUL-terminated LIT. */
bool as_http_name_is(const char *name, size_t len, const char *lit);

/* The members of a comma-separated list (RFC 9110 5.6.1), in order.
 * Empty members are returned too (LEN 0: "a,,b", "a,", and an empty value
 * is one empty member) so that callers can refuse them where they would be
 * ambiguous. Leading and trailing OWS are not part of a member. */
struct as_http_list {
    const char *p, *end;
    bool done;
};

void as_http_list_init(struct as_http_list *l, const char *v, size_t len);
bool as_http_list_next(struct as_http_list *l, const char **member, size_t *len);

/* The non-empty members of a list from the last to the first: the order
 * in which front servers' X-Forwarded-For entries are judged, each server
 * having appended the address it got the request from. */
struct as_http_list_rev {
    const char *start, *end;
};

void as_http_list_rev_init(struct as_http_list_rev *l, const char *v, size_t len);
bool as_http_list_prev(struct as_http_list_rev *l, const char **member, size_t *len);

/* Is TOKEN (any case, LEN bytes) a member of the list V? */
bool as_http_list_has_n(const char *v, size_t vlen, const char *token, size_t len);

static inline bool as_http_list_has(const char *v, size_t vlen, const char *token)
{
    return as_http_list_has_n(v, vlen, token, strlen(token));
}

#endif
