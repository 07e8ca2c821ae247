/* Growable strings. Out of memory aborts: appstackd cannot do anything
 * sensible without a few kilobytes, and a half-written reply is worse. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static void reserve(struct sbuf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : 256;

    if (b->len + extra + 1 <= b->cap)
        return;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->s = as_xrealloc(b->s, cap);
    b->cap = cap;
}

void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sbuf_json_str(struct sbuf *b, const char *s)
{
    sbuf_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sbuf_printf(b, "\\%c", c);
        else if (c == '\n')
            sbuf_add(b, "\\n", 2);
        else if (c < 0x20 || c >= 0x7f)  /* keeps the reply valid JSON whatever the bytes */
            sbuf_printf(b, "\\u%04x", c);
        else
            sbuf_add(b, s, 1);
    }
    sbuf_add(b, "\"", 1);
}

char *sbuf_take(struct sbuf *b)
{
    char *s;

    reserve(b, 0);
    s = b->s;
    memset(b, 0, sizeof *b);
    return s;
}

void sbuf_free(struct sbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}
