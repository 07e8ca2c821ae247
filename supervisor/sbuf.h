/* A growable string for replies whose size is not known in advance
 * (status of many workers, a Python traceback). */
#ifndef APPSTACK_SBUF_H
#define APPSTACK_SBUF_H

#include <stddef.h>

struct sbuf {
    char *s;
    size_t len, cap;
};

void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_add(struct sbuf *b, const char *s, size_t n);
/* S as a JSON string literal, quotes included. */
void sbuf_json_str(struct sbuf *b, const char *s);
/* Hands the string over (never NULL); B is empty afterwards. */
char *sbuf_take(struct sbuf *b);
void sbuf_free(struct sbuf *b);

#endif
