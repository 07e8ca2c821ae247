/* Allocations with no way to report a failure to the caller: out of
 * memory, the program says so on stderr and aborts, and its supervisor
 * (appstackd, appstack-proxy's master, systemd) starts it again, rather
 * than it serving on with a piece missing. */
#ifndef APPSTACK_XALLOC_H
#define APPSTACK_XALLOC_H

#include <stddef.h>

/* "PROGRAM: out of memory", then abort(). */
_Noreturn void as_out_of_memory(void);

void *as_xmalloc(size_t n);
void *as_xcalloc(size_t n, size_t size);        /* N may be 0 */
void *as_xrealloc(void *p, size_t n);
char *as_xstrdup(const char *s);

#endif
