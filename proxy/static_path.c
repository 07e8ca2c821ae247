/* Static path resolution (see static_path.h). The kernel's RESOLVE_BENEATH
 * is the real guard against escapes; this refuses the obvious ones early
 * and makes location matching see the same path for every spelling of it. */
#include "static_path.h"

#include <string.h>

enum { F_DOTDOT = 1, F_SLASH = 2, F_NUL = 4 };

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "http://host/p?q" -> "/p?q"; origin-form unchanged; anything else NULL. */
static const char *path_start(const char *t, size_t len, size_t *plen)
{
    const char *end = t + len, *p;

    if (len && t[0] == '/') {
        *plen = len;
        return t;
    }
    p = memchr(t, ':', len);
    if (!p || end - p < 3 || p[1] != '/' || p[2] != '/')
        return NULL;
    p += 3;
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p == end || *p != '/')
        return NULL;
    *plen = (size_t)(end - p);
    return p;
}

/* Appends the decoded segment [SEG, SEG+N) to OUT, noting "." and "..". */
static bool add_segment(char *out, size_t outlen, size_t *o, const char *seg, size_t n, int *flags)
{
    if (n == 0 || (n == 1 && seg[0] == '.'))
        return true;
    if (n == 2 && seg[0] == '.' && seg[1] == '.')
        *flags |= F_DOTDOT;
    if (*o + 1 + n >= outlen)
        return false;
    out[(*o)++] = '/';
    memcpy(out + *o, seg, n);
    *o += n;
    return true;
}

/* Percent-decodes the path and normalises it: no empty or "." segments.
 * Returns false on bad encoding or overflow. */
static bool decode_path(const char *p, size_t len, char *out, size_t outlen, int *flags)
{
    char seg[4096];         /* not cleared: 4 KiB of zeros per request showed in profiles */
    size_t o = 0, s = 0, i;
    bool trailing = false;

    seg[0] = '\0';
    for (i = 0; i < len && p[i] != '?' && p[i] != '#'; i++) {
        char c = p[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(p[i + 1]) : -1, lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
            if (c == '/')
                *flags |= F_SLASH;
            else if (c == '\0')
                *flags |= F_NUL;
        } else if (c == '\0') {
            *flags |= F_NUL;    /* raw: it would cut the decoded path short */
        } else if (c == '/') {
            if (!add_segment(out, outlen, &o, seg, s, flags))
                return false;
            s = 0;
            trailing = true;
            continue;
        }
        if (s + 1 >= sizeof seg)
            return false;
        seg[s++] = c;
        trailing = false;
    }
    if (!add_segment(out, outlen, &o, seg, s, flags))
        return false;
    /* A trailing slash (or "/.") names a directory: keep it visible. */
    if ((trailing || (s == 1 && seg[0] == '.') || o == 0) && o + 1 < outlen)
        out[o++] = '/';
    out[o] = '\0';
    return true;
}

static bool match(const struct sp_location *l, const char *path, size_t plen)
{
    if (l->exact)
        return plen == l->prefix_len && !memcmp(path, l->prefix, plen);
    if (plen >= l->prefix_len)
        return !memcmp(path, l->prefix, l->prefix_len);
    /* "/static" for location "/static/": the location's own directory. */
    return false;
}

enum sp_result static_resolve(const char *target, size_t len,
                              const struct sp_location *locs, size_t n,
                              char *out, size_t outlen, size_t *index, const char **rel)
{
    size_t plen, best = n, best_len = 0, outl;
    const char *p = path_start(target, len, &plen);
    int flags = 0;

    if (!p || outlen < 2)
        return SP_FORWARD;
    if (!decode_path(p, plen, out, outlen, &flags))
        return SP_BAD_REQUEST;
    outl = strlen(out);
    for (size_t i = 0; i < n; i++) {
        if (locs[i].exact && match(&locs[i], out, outl)) {
            best = i;
            break;
        }
        if (!locs[i].exact && locs[i].prefix_len > best_len && match(&locs[i], out, outl)) {
            best = i;
            best_len = locs[i].prefix_len;
        }
    }
    if (best == n)
        return SP_FORWARD;
    if (flags)
        return SP_NOT_FOUND;
    *index = best;
    if (locs[best].exact) {
        *rel = out + outl;
        return SP_STATIC;
    }
    *rel = out + locs[best].prefix_len;
    while (**rel == '/')
        (*rel)++;
    return SP_STATIC;
}
