/* Maps a request-target to a static location and a path inside its alias.
 * Pure function (no I/O, no globals), so it can be fuzzed on its own. */
#ifndef APPSTACK_PROXY_STATIC_PATH_H
#define APPSTACK_PROXY_STATIC_PATH_H

#include <stdbool.h>
#include <stddef.h>

struct sp_location {
    const char *prefix;     /* "/static/" or, when exact, "/favicon.ico" */
    size_t prefix_len;
    bool exact;
};

enum sp_result {
    SP_FORWARD,             /* no static location: the upstream's business */
    SP_STATIC,              /* serve *REL from locs[*INDEX] */
    SP_NOT_FOUND,           /* a static location, but a path we never serve */
    SP_BAD_REQUEST,         /* malformed percent-encoding, or too long */
};

/* PATH is the request's path as the parser gives it (LEN bytes, still
 * percent-encoded, without query or fragment; "*" forwards). The decoded
 * and normalised path is written to OUT (OUTLEN bytes, NUL-terminated); on
 * SP_STATIC, *REL points into OUT at the part below the location, without a
 * leading slash ("" for the location itself or an exact match). A path with
 * "..", an encoded slash or a NUL inside a static location is SP_NOT_FOUND. */
enum sp_result static_resolve(const char *path, size_t len,
                              const struct sp_location *locs, size_t n,
                              char *out, size_t outlen, size_t *index, const char **rel);

#endif
