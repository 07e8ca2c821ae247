/* X-Accel-Redirect (see accel.h). */
#include "accel.h"
#include "upstream.h"
#include "site.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATH_MAX_DECODED 4200

/* The upstream fields that go with the file (nginx's list for an
 * internal redirect). */
static bool kept_field(const char *name, size_t n)
{
    static const char *const keep[] = { "Content-Disposition", "Cache-Control", "Expires", "Set-Cookie", "Link",
                                        "Content-Language", NULL };

    for (const char *const *k = keep; *k; k++)
        if (strlen(*k) == n && !strncasecmp(*k, name, n))
            return true;
    return false;
}

bool accel_field(const char *name, size_t len)
{
    return len > 8 && !strncasecmp(name, "X-Accel-", 8);
}

static char *dup_n(const char *p, size_t n)
{
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

bool accel_begin(struct exchange *x, struct upconn *u)
{
    const char *b = u->head, *v = NULL;
    size_t vl = 0, total = 0, q;
    struct accel *a;

    for (int i = 0; i < u->n_hdr; i++) {
        if (u->hdr[i].nl == 16 && !strncasecmp(b + u->hdr[i].no, "X-Accel-Redirect", 16)) {
            v = b + u->hdr[i].vo;
            vl = u->hdr[i].vl;
        } else if (kept_field(b + u->hdr[i].no, u->hdr[i].nl)) {
            total += u->hdr[i].nl + u->hdr[i].vl + 4;
        }
    }
    if (!v)
        return false;
    a = calloc(1, sizeof *a);
    if (!a || !(a->lines = malloc(total + 1))) {
        free(a);
        return false;           /* out of memory: the response goes out as it is */
    }
    for (q = 0; q < vl && v[q] != '?'; q++)
        ;
    a->path = dup_n(v, q);
    a->path_len = q;
    for (int i = 0; i < u->n_hdr; i++) {
        const char *name = b + u->hdr[i].no, *val = b + u->hdr[i].vo;
        size_t nl = u->hdr[i].nl, len = u->hdr[i].vl;
        if (nl == 12 && !strncasecmp(name, "Content-Type", 12)) {
            free(a->type);
            a->type = dup_n(val, len);
        } else if (kept_field(name, nl)) {
            memcpy(a->lines + a->lines_len, name, nl);
            memcpy(a->lines + a->lines_len + nl, ": ", 2);
            memcpy(a->lines + a->lines_len + nl + 2, val, len);
            memcpy(a->lines + a->lines_len + nl + 2 + len, "\r\n", 2);
            a->lines_len += nl + len + 4;
            if (nl == 13 && !strncasecmp(name, "Cache-Control", 13))
                a->cache_control = true;
        }
    }
    x->accel = a;
    return true;
}

void accel_serve(struct exchange *x)
{
    struct accel *a = x->accel;
    struct site *site = x->site;
    char path[PATH_MAX_DECODED];
    const char *rel = NULL;
    size_t idx = 0;
    enum sp_result r = SP_FORWARD;

    x->static_req = true;
    if (a->path && a->path_len && a->path[0] == '/')
        r = static_resolve(a->path, a->path_len, site->sp, site->n_locs, path, sizeof path, &idx, &rel);
    if (r != SP_STATIC) {
        /* a path outside every static location, "..", an encoded slash:
         * the application's mistake or an attack, never served */
        as_warn("X-Accel-Redirect \"%s\" from %s for %s %.*s: not a file of a static location: 404",
                a->path ? a->path : "", x->upstream ? x->upstream->name : "-", x->req->method,
                (int)x->req->target_len, x->req->target);
        resp_simple(x, 404, NULL);
        resp_output(x);
        return;
    }
    static_serve(x, &site->locs[idx], rel, path);
    resp_output(x);
}

void accel_end(struct exchange *x)
{
    struct accel *a = x->accel;

    if (!a)
        return;
    x->accel = NULL;
    free(a->path);
    free(a->type);
    free(a->lines);
    free(a);
}
