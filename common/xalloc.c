/* Allocate or abort (see xalloc.h). */
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void as_out_of_memory(void)
{
    fprintf(stderr, "%s: out of memory\n", program_invocation_short_name);
    abort();
}

void *as_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        as_out_of_memory();
    return p;
}

void *as_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);

    if (!p)
        as_out_of_memory();
    return p;
}

void *as_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        as_out_of_memory();
    return p;
}

char *as_xstrdup(const char *s)
{
    char *d = strdup(s);

    if (!d)
        as_out_of_memory();
    return d;
}
