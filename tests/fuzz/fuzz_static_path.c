/* libFuzzer target: the proxy's static path resolver (proxy/static_path.c),
 * request path -> location + path below its alias. The input is taken as
 * the path the parser hands over (it checks less than the parser does: raw
 * NULs, bad escapes and odd first bytes come through here too).
 *
 * What must hold for every path: a path it hands to the file server never
 * has a ".." or "." segment, an empty segment, a NUL or a leading slash
 * below the location; it lies under the location that matched (exact
 * locations match the whole path); the output buffer is never overrun and
 * the answer does not depend on the buffer's previous content.
 *
 * The first byte picks the output buffer size (small ones exercise the
 * overflow paths). Built by `make fuzz`; replayed by `make check`. */
#include <stdlib.h>
#include <string.h>

#include "static_path.h"

#define LOC(p, e) { p, sizeof(p) - 1, e }

static const struct sp_location locs[] = {
    LOC("/static/", false),
    LOC("/static/admin/", false),
    LOC("/media/", false),
    LOC("/favicon.ico", true),
    LOC("/robots.txt", true),
    LOC("/", false),
};
#define N_LOCS (sizeof locs / sizeof locs[0])

static void check_rel(const char *out, size_t outlen, size_t index, const char *rel)
{
    const struct sp_location *l = &locs[index];
    size_t len = strlen(out), i, seg = 0;

    if (len >= outlen || rel < out || rel > out + len || index >= N_LOCS)
        abort();
    if (l->exact ? strcmp(out, l->prefix) != 0 || *rel : strncmp(out, l->prefix, l->prefix_len) != 0)
        abort();
    if (*rel == '/')
        abort();
    /* Segments of REL: none empty (but a trailing slash), ".", or "..". */
    for (i = 0; ; i++) {
        if (rel[i] == '/' || rel[i] == '\0') {
            size_t n = i - seg;

            if ((n == 1 && rel[seg] == '.') || (n == 2 && rel[seg] == '.' && rel[seg + 1] == '.'))
                abort();
            if (n == 0 && rel[i] == '/')
                abort();
            if (rel[i] == '\0')
                break;
            seg = i + 1;
        }
    }
}

static enum sp_result resolve(const char *t, size_t n, size_t outlen, char fill, size_t *index,
                              char *out, const char **rel)
{
    enum sp_result r;

    memset(out, fill, outlen);
    *index = N_LOCS;
    *rel = NULL;
    r = static_resolve(t, n, locs, N_LOCS, out, outlen, index, rel);
    if (r != SP_FORWARD && r != SP_STATIC && r != SP_NOT_FOUND && r != SP_BAD_REQUEST)
        abort();
    return r;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const size_t sizes[] = { 2, 3, 8, 13, 16, 64, 256, 4096 };
    size_t outlen, i1, i2;
    const char *t = (const char *)data + 1, *rel1, *rel2;
    char *out1, *out2;
    enum sp_result r1, r2;

    if (size < 1)
        return 0;
    outlen = sizes[data[0] & 7];
    /* Exact-size heap buffers: ASan catches a write one byte past them. */
    out1 = malloc(outlen);
    out2 = malloc(outlen);
    if (!out1 || !out2)
        abort();
    r1 = resolve(t, size - 1, outlen, 'A', &i1, out1, &rel1);
    r2 = resolve(t, size - 1, outlen, 'B', &i2, out2, &rel2);
    if (r1 != r2)
        abort();
    if (r1 == SP_STATIC) {
        check_rel(out1, outlen, i1, rel1);
        if (i1 != i2 || strcmp(out1, out2) != 0 || rel1 - out1 != rel2 - out2)
            abort();
    }
    free(out1);
    free(out2);
    return 0;
}
