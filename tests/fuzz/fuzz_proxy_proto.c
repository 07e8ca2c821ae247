/* libFuzzer target: the proxy's PROXY protocol v1/v2 parser
 * (proxy/proxy_proto.c).
 *
 * What must hold for every input: a header length is never more than the
 * bytes given, nor more than PP_MAX; a complete header's answer does not
 * change when more bytes follow it (the proxy peeks at what follows); an
 * answer of "more" on a prefix never turns into a different length on a
 * longer input than the header; the family is one of the three. Built by
 * `make fuzz`; replayed by `make check`. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct pp_addr a, b;
    unsigned char *copy = malloc(size + 1);
    int r;

    if (!copy)
        return 0;
    memcpy(copy, data, size);
    r = pp_parse(copy, size, &a);
    if (r > (int)size || r > PP_MAX)
        abort();
    if (r > 0) {
        if (a.family != AF_INET && a.family != AF_INET6 && a.family != AF_UNSPEC)
            abort();
        /* the same header with a byte after it: same answer */
        copy[size] = 'G';
        if (pp_parse(copy, size + 1, &b) != r || b.family != a.family || b.src_port != a.src_port ||
            memcmp(a.src, b.src, sizeof a.src))
            abort();
        /* every prefix of it is "more" (or already invalid, never another length) */
        for (size_t n = 0; n < (size_t)r; n++) {
            int p = pp_parse(copy, n, &b);
            if (p > 0)
                abort();
        }
    }
    free(copy);
    return 0;
}
