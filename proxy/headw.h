/* A response or request head being written: many small pieces gathered on
 * the stack and appended to the spool in one piece (or a few, for a head
 * larger than the buffer) instead of one append each. */
#ifndef APPSTACK_PROXY_HEADW_H
#define APPSTACK_PROXY_HEADW_H

#include <string.h>

#include "buf.h"
#include "fmt.h"

struct headw {
    struct spool *s;
    size_t len;
    char buf[4096];
};

static inline void hw_init(struct headw *w, struct spool *s)
{
    w->s = s;
    w->len = 0;
}

static inline void hw_flush(struct headw *w)
{
    spool_append(w->s, w->buf, w->len);
    w->len = 0;
}

static inline void hw_put(struct headw *w, const char *p, size_t n)
{
    if (n > sizeof w->buf - w->len) {
        hw_flush(w);
        if (n > sizeof w->buf) {
            spool_append(w->s, p, n);
            return;
        }
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static inline void hw_str(struct headw *w, const char *p)
{
    hw_put(w, p, strlen(p));
}

static inline void hw_char(struct headw *w, char ch)
{
    hw_put(w, &ch, 1);
}

static inline void hw_u64(struct headw *w, uint64_t v)
{
    char t[20];

    hw_put(w, t, fmt_utoa(v, t));
}

static inline void hw_header(struct headw *w, const char *name, size_t nl, const char *value, size_t vl)
{
    hw_put(w, name, nl);
    hw_put(w, ": ", 2);
    hw_put(w, value, vl);
    hw_put(w, "\r\n", 2);
}

#endif
