/* Static path resolution (see static_path.h). The kernel's RESOLVE_BENEATH
 * is the real guard against escapes; this refuses the obvious ones early
 * and makes location matching see the same path for every spelling of it. */
#include "static_path.h"

#include <string.h>

#include "http_uri.h"

enum { F_DOTDOT = 1, F_SLASH = 2, F_NUL = 4 };

/* Appends the segment SEG (N bytes as sent) to OUT, percent-decoded
 * (common/http_uri.c), noting "..", encoded slashes and NULs; "." and
 * empty segments add nothing. *DOT: it was ".". 0 on overflow, -1 on bad
 * encoding. */
static int add_segment(char *out, size_t outlen, size_t *o, const char *seg, size_t n, int *flags, bool *dot)
{
    char *d = out + *o + 1;
    unsigned seen;
    ssize_t len;

    *dot = false;
    if (n == 0)
        return 1;
    if (*o + 1 + n >= outlen)
        return 0;       /* decoding never makes it longer */
    len = as_pct_decode(seg, n, d, &seen);
    if (len < 0)
        return -1;
    if (seen & AS_PCT_SLASH)
        *flags |= F_SLASH;
    if (seen & AS_PCT_NUL)
        *flags |= F_NUL;
    if (len == 1 && d[0] == '.') {
        *dot = true;
        return 1;
    }
    if (len == 2 && d[0] == '.' && d[1] == '.')
        *flags |= F_DOTDOT;
    out[*o] = '/';
    *o += 1 + (size_t)len;
    return 1;
}

/* Decodes and normalises PATH (from "/", without query or fragment): no
 * empty or "." segments. Returns false on bad encoding or overflow. */
static bool decode_path(const char *p, size_t len, char *out, size_t outlen, int *flags)
{
    const char *end = p + len, *seg = p + 1, *slash;
    size_t o = 0;
    bool dot = false, dir;
    int rc;

    for (;;) {
        slash = memchr(seg, '/', (size_t)(end - seg));
        rc = add_segment(out, outlen, &o, seg, (size_t)((slash ? slash : end) - seg), flags, &dot);
        if (rc <= 0)
            return false;
        if (!slash)
            break;
        seg = slash + 1;
    }
    /* A trailing slash (or "/.") names a directory: keep it visible. */
    dir = seg == end || dot || o == 0;
    if (dir && o + 1 < outlen)
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

enum sp_result static_resolve(const char *path, size_t len,
                              const struct sp_location *locs, size_t n,
                              char *out, size_t outlen, size_t *index, const char **rel)
{
    size_t best = n, best_len = 0, outl;
    int flags = 0;

    if (len == 0 || path[0] != '/' || outlen < 2)
        return SP_FORWARD;      /* "*" */
    if (!decode_path(path, len, out, outlen, &flags))
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
