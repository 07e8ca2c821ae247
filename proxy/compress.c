/* Compression on the fly (see compress.h). gzip of a body in hand whole (a
 * static file, an upstream body of known length up to COMPRESS_WHOLE_MAX,
 * gathered first) is one libdeflate call, which spends 55 to 65 % of
 * zlib's instructions at the same level on a page of 100 KiB, and fewer
 * than zlib for a page of a few hundred bytes too. One libdeflate
 * compressor per level, made when first used and kept until exit (656 KiB
 * at levels 2 to 9, 200 KiB at 1: its hash tables and match buffers).
 * Bodies of unknown length (streamed) or above COMPRESS_WHOLE_MAX go
 * through zlib's deflate as they arrive; those streams are kept for reuse
 * (deflateReset), by level: a full deflate state is about 256 KiB. brotli
 * has no reset, so an encoder is made per response. */
#include "compress.h"
#include "exchange.h"

#include <brotli/encode.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define ZCACHE_MAX 64
#define WCACHE_MAX 8            /* gathering encoders kept, with their buffers */
#define OUT_CHUNK 16384

static const char *const default_types[] = {
    "text/html", "text/css", "text/plain", "text/javascript", "application/javascript",
    "application/json", "image/svg+xml", NULL
};

struct zenc {
    int coding;
    int level;
    bool streamed;
    bool whole;                 /* AE_GZIP of a body gathered whole: libdeflate at its end */
    char *body;                 /* whole: the body so far, LEN of CAP bytes */
    size_t len, cap;
    z_stream z;                 /* AE_GZIP, not whole */
    BrotliEncoderState *br;     /* AE_BR */
    struct zenc *next;
};

static struct {
    struct zenc *free;
    int n;
    struct zenc *wfree;         /* whole encoders, their buffers kept */
    int wn;
    char *buf;                  /* the one-shot output */
    size_t cap;
    struct libdeflate_compressor *ld[10];   /* by level, as used */
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

static struct zenc *zenc_get(int coding, int level, uint64_t size_hint)
{
    struct zenc *e;

    if (coding == AE_GZIP) {
        for (struct zenc **p = &zc.free; (e = *p); p = &e->next) {
            if (e->level == level) {
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
        /* nginx's gzip_window and gzip_hash (32 KiB, 8); + 16: a gzip
         * wrapper. Only bodies of unknown length or above
         * COMPRESS_WHOLE_MAX come here, so no smaller window would do. */
        if (deflateInit2(&e->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
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

/* A gathering encoder whose buffer holds LEN bytes, from the cache when
 * one is there (the buffer grows once, to the body's declared length). */
static struct zenc *whole_get(size_t len)
{
    struct zenc *e = zc.wfree;

    if (e) {
        zc.wfree = e->next;
        zc.wn--;
    } else if (!(e = calloc(1, sizeof *e)))
        return NULL;
    e->coding = AE_GZIP;
    e->whole = true;
    e->streamed = false;
    e->len = 0;
    if (len > e->cap) {
        char *b = realloc(e->body, len);
        if (!b) {
            free(e->body);
            free(e);
            return NULL;
        }
        e->body = b;
        e->cap = len;
    }
    return e;
}

static void zenc_free(struct zenc *e)
{
    if (e->whole)
        free(e->body);
    else if (e->coding == AE_GZIP)
        deflateEnd(&e->z);
    else
        BrotliEncoderDestroyInstance(e->br);
    free(e);
}

static void zenc_put(struct zenc *e)
{
    if (!e)
        return;
    if (e->whole) {
        if (zc.wn < WCACHE_MAX) {
            e->next = zc.wfree;
            zc.wfree = e;
            zc.wn++;
        } else
            zenc_free(e);
        return;
    }
    if (e->coding == AE_GZIP && zc.n < ZCACHE_MAX) {
        e->next = zc.free;
        zc.free = e;
        zc.n++;
        return;
    }
    zenc_free(e);
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

    if (coding == AE_GZIP && !streamed && size_hint && size_hint <= COMPRESS_WHOLE_MAX)
        x->enc = whole_get((size_t)size_hint);
    else
        x->enc = zenc_get(coding, level, size_hint);
    if (!x->enc)
        return false;
    x->enc->level = level;
    x->enc->streamed = streamed;
    return true;
}

int compress_body(struct exchange *x, const char *data, size_t len)
{
    struct zenc *e = x->enc;

    if (e->whole) {
        if (len > e->cap - e->len)
            return -1;      /* more than the Content-Length the parser holds it to */
        memcpy(e->body + e->len, data, len);
        e->len += len;
        return 0;
    }
    return encode(e, data, len, 0, emit_resp, x);
}

int compress_flush(struct exchange *x)
{
    if (!x->enc->streamed)
        return 0;
    return encode(x->enc, NULL, 0, 1, emit_resp, x);
}

static const char *gzip_whole(int level, const char *in, size_t len, size_t *out_len);

int compress_finish(struct exchange *x)
{
    struct zenc *e = x->enc;

    if (e->whole) {
        size_t n = 0;
        const char *out = gzip_whole(e->level, e->body, e->len, &n);
        return out ? resp_body_raw(x, out, n) : -1;
    }
    return encode(e, NULL, 0, 2, emit_resp, x);
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

/* The process's libdeflate compressor for LEVEL (1 to 9, the option's
 * range, passed as it is: libdeflate's levels mean what zlib's do, a
 * faster search for the lower ones). */
static struct libdeflate_compressor *ld_get(int level)
{
    if (level < 0 || level >= (int)(sizeof zc.ld / sizeof zc.ld[0]))
        return NULL;
    if (!zc.ld[level])
        zc.ld[level] = libdeflate_alloc_compressor(level);
    return zc.ld[level];
}

/* gzip of LEN bytes at IN in one libdeflate call, into zc.buf sized by
 * libdeflate's bound (it then cannot run out of room). */
static const char *gzip_whole(int level, const char *in, size_t len, size_t *out_len)
{
    struct libdeflate_compressor *c = ld_get(level);
    size_t bound, n;

    if (!c)
        return NULL;
    bound = libdeflate_gzip_compress_bound(c, len);
    if (reserve(bound) < 0)
        return NULL;
    n = libdeflate_gzip_compress(c, in, len, zc.buf, bound);
    if (!n)
        return NULL;
    *out_len = n;
    return zc.buf;
}

/* gzip: one libdeflate call (gzip_whole). brotli: the stream, piece by
 * piece, into zc.buf. */
const char *compress_whole(const struct runtime *rt, int coding, const char *in, size_t len, size_t *out_len)
{
    struct sink s = { 0 };
    struct zenc *e;
    int rc;

    if (coding == AE_GZIP)
        return gzip_whole((int)rt->cfg.gzip_comp_level, in, len, out_len);
    if (!(e = zenc_get(coding, (int)rt->cfg.brotli_comp_level, len)))
        return NULL;
    rc = encode(e, in, len, 2, emit_buf, &s);
    zenc_put(e);
    if (rc < 0)
        return NULL;
    *out_len = s.len;
    return zc.buf;
}

void compress_release(void)
{
    struct zenc *e;

    while ((e = zc.free)) {
        zc.free = e->next;
        zenc_free(e);
    }
    while ((e = zc.wfree)) {
        zc.wfree = e->next;
        zenc_free(e);
    }
    zc.n = zc.wn = 0;
    for (size_t i = 0; i < sizeof zc.ld / sizeof zc.ld[0]; i++) {
        libdeflate_free_compressor(zc.ld[i]);
        zc.ld[i] = NULL;
    }
    free(zc.buf);
    zc.buf = NULL;
    zc.cap = 0;
}
