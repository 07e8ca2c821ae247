/* Cheap formatting for the hot paths: bounded appends into a caller's
 * buffer, without printf's parsing and locale machinery (which cost more
 * than the rest of a forwarded request together). Output past the end is
 * cut, like snprintf's. */
#ifndef APPSTACK_PROXY_FMT_H
#define APPSTACK_PROXY_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fmt {
    char *p, *end;
};

static inline void fmt_mem(struct fmt *f, const void *s, size_t n)
{
    size_t room = (size_t)(f->end - f->p);

    if (n > room)
        n = room;
    memcpy(f->p, s, n);
    f->p += n;
}

static inline void fmt_str(struct fmt *f, const char *s)
{
    fmt_mem(f, s, strlen(s));
}

static inline void fmt_char(struct fmt *f, char ch)
{
    if (f->p < f->end)
        *f->p++ = ch;
}

/* Decimal digits of V at the end of OUT[20]; returns how many. */
static inline size_t fmt_utoa(uint64_t v, char out[20])
{
    size_t i = 20;

    do
        out[--i] = (char)('0' + v % 10);
    while (v /= 10);
    memmove(out, out + i, 20 - i);
    return 20 - i;
}

static inline void fmt_u64(struct fmt *f, uint64_t v)
{
    char t[20];

    fmt_mem(f, t, fmt_utoa(v, t));
}

/* V with exactly WIDTH digits (leading zeros). */
static inline void fmt_u64_width(struct fmt *f, uint64_t v, int width)
{
    char t[20];

    for (int i = width - 1; i >= 0; i--, v /= 10)
        t[i] = (char)('0' + v % 10);
    fmt_mem(f, t, (size_t)width);
}

/* Lower-case hex digits of V into OUT[16]; returns how many. */
static inline size_t fmt_hex(uint64_t v, char out[16])
{
    static const char digits[] = "0123456789abcdef";
    char t[16];
    size_t i = 16;

    do
        t[--i] = digits[v & 15];
    while (v >>= 4);
    memcpy(out, t + i, 16 - i);
    return 16 - i;
}

#endif
