/* The request line (see http_target.h):
 *
 *   request-line   = method SP request-target SP HTTP-version
 *   method         = token                       (RFC 9110 9.1)
 *   request-target = origin-form / absolute-form / authority-form / asterisk-form
 *
 * What is refused, and why:
 * - not exactly two SP, or an HTTP-version other than "HTTP/" DIGIT "."
 *   DIGIT: 400 (3, 2.3); major version other than 1: 505; 1.2 to 1.9 are
 *   read as 1.1 (RFC 9110 2.5: the highest minor version we implement);
 * - a method that is not a token: 400; CONNECT (a tunnel, which a reverse
 *   proxy and an app server do not offer) and any method with a lower-case
 *   letter: 501, "not implemented" (9.1). Methods are case-sensitive and
 *   every registered one is upper case; one with lower case is refused
 *   because apps and proxies fold case differently (Django dispatches on
 *   method.lower(), so "post" would pass an ACL on "POST");
 * - a target that is not origin-form, absolute-form with an http or https
 *   scheme and a host, or "*" with OPTIONS: 400 (3.2); a "%" in the path not
 *   followed by two hex digits: 400 (RFC 3986 2.1). Any other visible byte
 *   and obs-text pass (nginx and gunicorn pass them too; PEP 3333 has the
 *   path as latin-1). A "#fragment" is cut off: it is the client's, never
 *   the server's (RFC 9110 4.2.5).
 * In absolute-form the authority is the Host (3.2.2), userinfo dropped. */
#include "http_target.h"

#include <string.h>

#include "http_fields.h"
#include "http_head.h"
#include "http_uri.h"

static int refuse(struct as_http_request *r, int status, const char *why)
{
    r->error = why;
    return status;
}

static bool alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* "HTTP/" DIGIT "." DIGIT */
static int version(struct as_http_request *r, const char *v, size_t n)
{
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !digit(v[5]) || v[6] != '.' || !digit(v[7]))
        return refuse(r, 400, "malformed HTTP version");
    if (v[5] != '1')
        return refuse(r, 505, "HTTP version not supported");
    r->http_major = 1;
    r->http_minor = v[7] == '0' ? 0 : 1;
    return 0;
}

static int method(struct as_http_request *r, const char *m, size_t n)
{
    if (!as_http_token(m, n))
        return refuse(r, 400, "malformed method");
    if (n == 7 && memcmp(m, "CONNECT", 7) == 0)
        return refuse(r, 501, "CONNECT is not implemented");
    for (size_t i = 0; i < n; i++)
        if (m[i] >= 'a' && m[i] <= 'z')
            return refuse(r, 501, "method with lower case not implemented");
    return 0;
}

/* Appends S (N bytes) and a NUL to buf, whose room was reserved; returns
 * its offset. */
static size_t keep(struct as_http_request *r, const char *s, size_t n)
{
    size_t off = r->buf_len;

    memcpy(r->buf + off, s, n);
    r->buf[off + n] = '\0';
    r->buf_len += n + 1;
    return off;
}

/* userinfo = *( unreserved / pct-encoded / sub-delims / ":" ) */
static bool userinfo_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!alpha(c) && !digit(c) && !strchr("-._~!$&'()*+,;=:%", c))
            return false;
    }
    return as_pct_valid(s, n);
}

/* "http://[userinfo@]host[:port]" at T (up to END): *HOST and *HOST_END
 * delimit host[:port], which ends where the path or query starts. */
static bool absolute_form(const char *t, const char *end, const char **host, const char **host_end)
{
    const char *p = t, *a, *ae, *at;

    while (p < end && (alpha((unsigned char)*p) || digit((unsigned char)*p) || *p == '+' || *p == '-' ||
                       *p == '.'))
        p++;
    if (p == t || !alpha((unsigned char)*t) || end - p < 3 || memcmp(p, "://", 3) != 0)
        return false;
    if (!as_http_name_is(t, (size_t)(p - t), "http") && !as_http_name_is(t, (size_t)(p - t), "https"))
        return false;
    a = p + 3;
    for (ae = a; ae < end && *ae != '/' && *ae != '?'; ae++)
        ;
    at = memchr(a, '@', (size_t)(ae - a));
    if (at) {
        if (memchr(at + 1, '@', (size_t)(ae - at - 1)) || !userinfo_valid(a, (size_t)(at - a)))
            return false;
        a = at + 1;
    }
    /* RFC 9110 4.2.1: an http URI with an empty host is invalid */
    if (a == ae || !as_http_host_valid(a, (size_t)(ae - a)))
        return false;
    *host = a;
    *host_end = ae;
    return true;
}

/* The target at r->target_off (NUL-terminated); buf has room reserved for
 * its length again plus 4. */
static int target(struct as_http_request *r, bool options)
{
    const char *t = r->buf + r->target_off, *end, *path, *q, *host = NULL, *host_end = NULL;
    size_t len = strlen(t);
    const char *hash = memchr(t, '#', len);

    end = hash ? hash : t + len;
    if (t[0] == '/') {
        r->form = AS_HTTP_ORIGIN_FORM;
        path = t;
    } else if (end - t == 1 && t[0] == '*') {
        if (!options)
            return refuse(r, 400, "asterisk-form target without OPTIONS");
        r->form = AS_HTTP_ASTERISK_FORM;
        path = t;
    } else if (absolute_form(t, end, &host, &host_end)) {
        r->form = AS_HTTP_ABSOLUTE_FORM;
        path = host_end;
    } else {
        return refuse(r, 400, "request target in no form a server takes");
    }
    q = memchr(path, '?', (size_t)(end - path));
    r->has_query = q != NULL;
    if (q) {
        r->query_off = (size_t)(q + 1 - r->buf);
        r->query_len = (size_t)(end - q - 1);
    } else {
        q = end;
    }
    if (!as_pct_valid(path, (size_t)(q - path)))
        return refuse(r, 400, "malformed percent-encoding in the path");
    r->path_off = (size_t)(path - r->buf);
    r->path_len = (size_t)(q - path);
    if (host) {
        r->authority_len = (size_t)(host_end - host);
        r->authority_off = keep(r, host, r->authority_len);
    }
    if (r->path_len == 0) {
        /* "http://h" means "/", and "*" with OPTIONS when there is no query
         * either (RFC 9112 3.2.4) */
        r->path_off = keep(r, options && !r->has_query ? "*" : "/", 1);
        r->path_len = 1;
    }
    return 0;
}

int as_http_request_line(struct as_http_request *r)
{
    char *b = r->buf, *sp1, *sp2;
    size_t s = 0, n = r->buf_len, mlen, tlen;
    int status;

    while (s < n && (b[s] == '\r' || b[s] == '\n'))
        s++;    /* empty lines before it (RFC 9112 2.2) */
    n -= 2;     /* its CRLF: the guard saw it */
    memmove(b, b + s, n - s);
    n -= s;
    sp1 = memchr(b, ' ', n);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - b)) : NULL;
    if (!sp2 || memchr(sp2 + 1, ' ', n - (size_t)(sp2 + 1 - b)) || sp1 == b || sp2 == sp1 + 1)
        return refuse(r, 400, "malformed request line");
    mlen = (size_t)(sp1 - b);
    tlen = (size_t)(sp2 - sp1 - 1);
    if ((status = version(r, sp2 + 1, n - (size_t)(sp2 + 1 - b))) || (status = method(r, b, mlen)))
        return status;
    *sp1 = '\0';
    *sp2 = '\0';
    r->target_off = mlen + 1;
    r->target_len = tlen;
    r->buf_len = mlen + 1 + tlen + 1;
    if (!as_http_reserve(r, r->buf_len + tlen + 4))
        return refuse(r, 414, "request line too long to store");
    return target(r, mlen == 7 && memcmp(r->buf, "OPTIONS", 7) == 0);
}
