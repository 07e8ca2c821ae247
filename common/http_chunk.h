/* Chunk-size lines (RFC 9112 7.1), private to http_parse.c: read here, one
 * byte at a time, because llhttp 8.1 takes no whitespace around chunk
 * extensions (BWS in the grammar). llhttp is then handed the size alone. */
#ifndef APPSTACK_HTTP_CHUNK_H
#define APPSTACK_HTTP_CHUNK_H

#include <stdint.h>

enum as_chunk_step {
    AS_CHUNK_MORE,      /* the line goes on */
    AS_CHUNK_END,       /* its LF: *SIZE is the chunk size */
    AS_CHUNK_BAD,       /* not a chunk-size line */
    AS_CHUNK_HUGE,      /* a size of 2^63 or more */
};

/* *STATE starts at 0 for each line; *SIZE accumulates. */
enum as_chunk_step as_chunk_byte(int *state, uint64_t *size, unsigned char c);

#endif
