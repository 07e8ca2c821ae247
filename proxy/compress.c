/* Compression on the fly (see compress.h). zlib streams are kept for reuse
 * (deflateReset), by level and size: a full deflate state is about
 * 256 KiB, and every start clears its 64 KiB hash table. A body of known
 * length gets a window and a hash no larger than it needs (nginx's rule),
 * which for a page of a few KiB makes that clearing, not the compression,
 * the cheap part again. brotli has no reset, so an encoder is made per
 * response. */
#include "compress.h"
#include "exchange.h"

#include <brotli/encode.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define ZCACHE_MAX 64
#define OUT_CHUNK 16384

static const char *const default_types[] = {
    "text/html", "text/css", "text/plain", "text/javascript", "application/javascript",
    "application/json", "image/svg+xml", NULL
};

struct zenc {
    int coding;
    int level;
    int wbits, memlevel;        /* AE_GZIP: deflateInit2's, by the body's size */
    bool streamed;
    z_stream z;                 /* AE_GZIP */
    BrotliEncoderState *br;     /* AE_BR */
    struct zenc *next;
};

static struct {
    struct zenc *free;
    int n;
    char *buf;                  /* compress_whole's output */
    size_t cap;
} zc;

static bool type_in(const char *t, size_t n, const char *want)
{
    size_t wl = strlen(want);

    if (!strcmp(want, "*"))
        return true;
    return n == wl && !strncasecmp(t, want, n);
}

bool compress_type_ok(const struct runtime *rt, const char *type, size_t len)
{
    const struct as_strlist *l = &rt->cfg.compress_types;
    size_t n = 0;

    /* the media type without parameters or blanks */
    while (n < len && type[n] != ';' && type[n] != ' ' && type[n] != '\t')
        n++;
    if (!n)
        return false;
    if (!l->n) {
        for (const char *const *d = default_types; *d; d++)
            if (type_in(type, n, *d))
                return true;
        return false;
    }
    for (size_t i = 0; i < l->n; i++) {
        /* a line may carry several types */
        const char *p = l->v[i];
        while (*p) {
            size_t k = strcspn(p, " \t,");
            char one[128];
            if (k && k < sizeof one) {
                memcpy(one, p, k);
                one[k] = '\0';
                if (type_in(type, n, one))
                    return true;
            }
            p += k;
            p += strspn(p, " \t,");
        }
    }
    return false;
}

bool compress_eligible(const struct exchange *x, int status, int64_t len, const char *type, size_t tlen)
{
    const struct as_config *c = &x->rt->cfg;

    if (!c->gzip && !c->brotli)
        return false;
    /* as nginx: these statuses carry pages; 206 never (a range of the
     * encoded bytes would not be the range asked for) */
    if (status != 200 && status != 403 && status != 404)
        return false;
    if (len >= 0 && (uint64_t)len < c->gzip_min_length)
        return false;
    return type && compress_type_ok(x->rt, type, tlen);
}

int compress_coding(const struct exchange *x)
{
    const struct as_http_header *h = as_http_header(x->req, "Accept-Encoding");
    unsigned allowed = (x->rt->cfg.gzip ? 1u << AE_GZIP : 0) | (x->rt->cfg.brotli ? 1u << AE_BR : 0);

    if (!h || x->head_only)
        return AE_IDENTITY;
    return ae_choose(h->value, h->value_len, allowed);
}

const char *compress_coding_name(int coding)
{
    return coding == AE_BR ? "br" : coding == AE_GZIP ? "gzip" : "identity";
}

/* The window and hash for a body of LEN bytes (0: unknown), as nginx sizes
 * them: halve both while the body still fits in the smaller window (less
 * zlib's MIN_LOOKAHEAD of 262 bytes). The output is the same deflate
 * format at the same level; only the distance a match may reach back is
 * shorter than the body never was anyway. 9 is the least window zlib takes
 * with a gzip wrapper. */
static void zsize(uint64_t len, int *wbits, int *memlevel)
{
    int wb = 15, ml = 8;

    if (len) {
        while (wb > 9 && len + 262 < (uint64_t)1 << (wb - 1)) {
            wb--;
            ml--;
        }
        if (ml < 1)
            ml = 1;
    }
    *wbits = wb;
    *memlevel = ml;
}

static struct zenc *zenc_get(int coding, int level, uint64_t size_hint)
{
    struct zenc *e;
    int wbits = 0, memlevel = 0;

    if (coding == AE_GZIP) {
        zsize(size_hint, &wbits, &memlevel);
        for (struct zenc **p = &zc.free; (e = *p); p = &e->next) {
            if (e->level == level && e->wbits == wbits && e->memlevel == memlevel) {
                *p = e->next;
                zc.n--;
                if (deflateReset(&e->z) != Z_OK) {
                    deflateEnd(&e->z);
                    free(e);
                    return NULL;
                }
                return e;
            }
        }
    }
    e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->coding = coding;
    e->level = level;
    if (coding == AE_GZIP) {
        e->wbits = wbits;
        e->memlevel = memlevel;
        /* + 16: a gzip wrapper */
        if (deflateInit2(&e->z, level, Z_DEFLATED, wbits + 16, memlevel, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(e);
            return NULL;
        }
        return e;
    }
    e->br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
    if (!e->br) {
        free(e);
        return NULL;
    }
    BrotliEncoderSetParameter(e->br, BROTLI_PARAM_QUALITY, (uint32_t)level);
    BrotliEncoderSetParameter(e->br, BROTLI_PARAM_MODE, BROTLI_MODE_TEXT);
    if (size_hint) {
        /* a window no larger than the body: less memory for small pages */
        uint32_t lgwin = BROTLI_MIN_WINDOW_BITS;
        while (lgwin < 22 && ((uint64_t)1 << lgwin) < size_hint)
            lgwin++;
        BrotliEncoderSetParameter(e->br, BROTLI_PARAM_LGWIN, lgwin);
        BrotliEncoderSetParameter(e->br, BROTLI_PARAM_SIZE_HINT,
                                  size_hint > (1u << 30) ? (1u << 30) : (uint32_t)size_hint);
    }
    return e;
}

static void zenc_put(struct zenc *e)
{
    if (!e)
        return;
    if (e->coding == AE_GZIP && zc.n < ZCACHE_MAX) {
        e->next = zc.free;
        zc.free = e;
        zc.n++;
        return;
    }
    if (e->coding == AE_GZIP)
        deflateEnd(&e->z);
    else
        BrotliEncoderDestroyInstance(e->br);
    free(e);
}

typedef int (*emit_fn)(void *ctx, const char *p, size_t n);

/* Runs the encoder over IN with OP (0: more input, 1: flush, 2: finish),
 * handing every output piece to EMIT. 0, or -1. */
static int encode(struct zenc *e, const char *in, size_t len, int op, emit_fn emit, void *ctx)
{
    char out[OUT_CHUNK];

    if (e->coding == AE_GZIP) {
        int flush = op == 2 ? Z_FINISH : op == 1 ? Z_SYNC_FLUSH : Z_NO_FLUSH, rc;
        e->z.next_in = (Bytef *)(uintptr_t)in;
        e->z.avail_in = (uInt)len;
        do {
            e->z.next_out = (Bytef *)out;
            e->z.avail_out = sizeof out;
            rc = deflate(&e->z, flush);
            if (rc == Z_STREAM_ERROR)
                return -1;
            size_t n = sizeof out - e->z.avail_out;
            if (n && emit(ctx, out, n) < 0)
                return -1;
            if (rc == Z_STREAM_END)
                break;
        } while (e->z.avail_out == 0 || e->z.avail_in > 0);
        return 0;
    }
    {
        BrotliEncoderOperation bop = op == 2 ? BROTLI_OPERATION_FINISH : op == 1 ? BROTLI_OPERATION_FLUSH
                                                                                 : BROTLI_OPERATION_PROCESS;
        const uint8_t *next_in = (const uint8_t *)in;
        size_t avail_in = len;
        for (;;) {
            size_t avail_out = 0;
            if (!BrotliEncoderCompressStream(e->br, bop, &avail_in, &next_in, &avail_out, NULL, NULL))
                return -1;
            while (BrotliEncoderHasMoreOutput(e->br)) {
                size_t n = 0;
                const uint8_t *p = BrotliEncoderTakeOutput(e->br, &n);
                if (n && emit(ctx, (const char *)p, n) < 0)
                    return -1;
            }
            if (avail_in == 0 && (bop == BROTLI_OPERATION_PROCESS ||
                                  (bop == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(e->br)
                                                                  : !BrotliEncoderHasMoreOutput(e->br))))
                return 0;
        }
    }
}

static int emit_resp(void *ctx, const char *p, size_t n)
{
    return resp_body_raw(ctx, p, n);
}

bool compress_start(struct exchange *x, int coding, uint64_t size_hint, bool streamed)
{
    int level = coding == AE_BR ? (int)x->rt->cfg.brotli_comp_level : (int)x->rt->cfg.gzip_comp_level;

    x->enc = zenc_get(coding, level, size_hint);
    if (!x->enc)
        return false;
    x->enc->streamed = streamed;
    return true;
}

int compress_body(struct exchange *x, const char *data, size_t len)
{
    return encode(x->enc, data, len, 0, emit_resp, x);
}

int compress_flush(struct exchange *x)
{
    if (!x->enc->streamed)
        return 0;
    return encode(x->enc, NULL, 0, 1, emit_resp, x);
}

int compress_finish(struct exchange *x)
{
    return encode(x->enc, NULL, 0, 2, emit_resp, x);
}

void compress_end(struct exchange *x)
{
    zenc_put(x->enc);
    x->enc = NULL;
}

struct sink {
    size_t len;
};

/* Makes zc.buf hold at least CAP bytes. */
static int reserve(size_t cap)
{
    char *b;

    if (cap <= zc.cap)
        return 0;
    if (!(b = realloc(zc.buf, cap)))
        return -1;
    zc.buf = b;
    zc.cap = cap;
    return 0;
}

static int emit_buf(void *ctx, const char *p, size_t n)
{
    struct sink *s = ctx;

    if (s->len + n > zc.cap) {
        size_t cap = zc.cap ? zc.cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        if (reserve(cap) < 0)
            return -1;
    }
    memcpy(zc.buf + s->len, p, n);
    s->len += n;
    return 0;
}

/* gzip: one deflate call that ends the stream, straight into zc.buf sized
 * by deflateBound (zlib's promise that Z_FINISH then completes at once),
 * with no bounce through a chunk buffer. brotli: the stream, piece by
 * piece, into zc.buf. */
const char *compress_whole(const struct runtime *rt, int coding, const char *in, size_t len, size_t *out_len)
{
    int level = coding == AE_BR ? (int)rt->cfg.brotli_comp_level : (int)rt->cfg.gzip_comp_level;
    struct zenc *e = zenc_get(coding, level, len);
    struct sink s = { 0 };
    int rc;

    if (!e)
        return NULL;
    if (coding == AE_GZIP) {
        size_t bound = deflateBound(&e->z, (uLong)len);
        rc = reserve(bound);
        if (rc == 0) {
            e->z.next_in = (Bytef *)(uintptr_t)in;
            e->z.avail_in = (uInt)len;
            e->z.next_out = (Bytef *)zc.buf;
            e->z.avail_out = (uInt)bound;
            rc = deflate(&e->z, Z_FINISH) == Z_STREAM_END ? 0 : -1;
            s.len = bound - e->z.avail_out;
        }
    } else
        rc = encode(e, in, len, 2, emit_buf, &s);
    zenc_put(e);
    if (rc < 0)
        return NULL;
    *out_len = s.len;
    return zc.buf;
}
