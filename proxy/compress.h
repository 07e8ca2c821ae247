/* Compression of responses on the fly (gzip, brotli with libbrotlienc):
 * which responses, with which coding, and the encoders. gzip of a body in
 * hand whole is one libdeflate call: a static file (static_serve.c, up to
 * COMPRESS_STATIC_MAX), or an upstream body with a Content-Length up to
 * COMPRESS_WHOLE_MAX, gathered as it arrives (resp.c calls compress_body)
 * and encoded at its end. Other upstream bodies go through zlib's (or
 * brotli's) stream as they arrive, flushed after each read when the
 * upstream streams (no Content-Length), so a streamed page still arrives
 * piece by piece. */
#ifndef APPSTACK_PROXY_COMPRESS_H
#define APPSTACK_PROXY_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accept_enc.h"

#define COMPRESS_STATIC_MAX (1u << 20)  /* larger files: precompressed siblings only */
/* Upstream bodies of known length up to this are gathered and gzipped in
 * one call: the buffer is no larger than the zlib state (about 256 KiB)
 * the stream would hold for them meanwhile. */
#define COMPRESS_WHOLE_MAX (256u << 10)

struct exchange;
struct runtime;
struct upconn;
struct zenc;

/* Is a response of media type TYPE (a Content-Type value, parameters
 * allowed) one this runtime compresses? */
bool compress_type_ok(const struct runtime *rt, const char *type, size_t len);
/* Is a response of STATUS, LEN bytes (-1: unknown) and TYPE one the proxy
 * would compress for some client? Such responses get Vary: Accept-Encoding
 * whether this client gets them compressed or not. */
bool compress_eligible(const struct exchange *x, int status, int64_t len, const char *type, size_t tlen);
/* The coding X's client gets on the fly for an eligible response. */
int compress_coding(const struct exchange *x);
const char *compress_coding_name(int coding);

/* Starts encoding X's response body with CODING (x->enc). SIZE_HINT: the
 * body's length, or 0. STREAMED: flush after each piece the upstream
 * sends. False (and no encoding) when out of memory. */
bool compress_start(struct exchange *x, int coding, uint64_t size_hint, bool streamed);
/* Encodes body bytes into x->out (framed by resp_body_raw). */
int compress_body(struct exchange *x, const char *data, size_t len);
/* Everything given so far goes out (a streamed response), or the end. */
int compress_flush(struct exchange *x);
int compress_finish(struct exchange *x);
/* Releases x->enc (exchange_finish). */
void compress_end(struct exchange *x);

/* One-shot: LEN bytes at IN encoded with CODING into a buffer of the
 * process (valid until the next call); NULL on failure. */
const char *compress_whole(const struct runtime *rt, int coding, const char *in, size_t len, size_t *out_len);
/* Frees the encoders kept for reuse and the buffers (at exit). */
void compress_release(void);

#endif
