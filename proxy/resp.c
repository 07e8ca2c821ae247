/* Responses: heads and bodies go into the exchange's output through its
 * connection's protocol, which frames them (status line, chunks,
 * Connection); the producers (static files, forwarding, errors) only write
 * header lines and body bytes. */
#include "exchange.h"
#include "compress.h"
#include "http_reply.h"

#include <string.h>

void resp_head_begin(struct exchange *x, struct headw *w, int status, const char *reason, size_t reason_len)
{
    x->status = status;
    x->head_sent = true;
    hw_init(w, &x->out);
    x->c->proto->head_begin(x, w, status, reason, reason_len);
    hw_put(w, "X-Request-ID: ", 14);
    hw_str(w, x->id);
    hw_put(w, "\r\n", 2);
}

void resp_head(struct exchange *x, struct headw *w, int status)
{
    const char *reason = as_http_reason(status);

    resp_head_begin(x, w, status, reason, strlen(reason));
    hw_put(w, "Server: " AS_HTTP_SERVER "\r\nDate: ", 24);
    hw_str(w, proxy_date());
    hw_put(w, "\r\n", 2);
}

void resp_head_end(struct exchange *x, struct headw *w, enum body_kind body)
{
    if (__builtin_expect(x->rt->hsts != NULL, 0) && x->c->tp->secure)
        hw_put(w, x->rt->hsts, x->rt->hsts_len);
    x->c->proto->head_end(x, w, body);
    hw_flush(w);
}

int resp_body(struct exchange *x, const char *data, size_t len)
{
    if (x->accel)
        return 0;       /* the body of an X-Accel-Redirect response is dropped */
    if (x->enc)
        return compress_body(x, data, len);
    return resp_body_raw(x, data, len);
}

int resp_body_raw(struct exchange *x, const char *data, size_t len)
{
    struct spool *out = &x->out;
    char size[18];
    size_t n;

    if (!len)
        return 0;       /* an empty chunk would end the body */
    if (x->chunk_out) {
        n = fmt_hex(len, size);
        size[n++] = '\r';
        size[n++] = '\n';
        if (spool_append(out, size, n) < 0)
            return -1;
    }
    if (spool_append(out, data, len) < 0)
        return -1;
    if (x->chunk_out && spool_append(out, "\r\n", 2) < 0)
        return -1;
    return 0;
}

void resp_done(struct exchange *x)
{
    if (x->enc && compress_finish(x) < 0)
        x->keep_alive = false;
    if (x->chunk_out)
        spool_append(&x->out, "0\r\n\r\n", 5);
    x->resp_done = true;
    resp_output(x);
}

void resp_output(struct exchange *x)
{
    /* a streamed response: what the upstream sent so far goes out now */
    if (x->enc && !x->resp_done && compress_flush(x) < 0)
        x->keep_alive = false;
    x->c->proto->output(x);
}

/* The head through the protocol, the type and body as every error of
 * ours (common/http_reply.c). */
void resp_simple(struct exchange *x, int status, const char *extra)
{
    struct headw w;
    char body[AS_HTTP_ERROR_BODY_MAX];
    size_t n = as_http_error_body(status, body);

    resp_head(x, &w, status);
    hw_str(&w, "Content-Type: " AS_HTTP_ERROR_TYPE "\r\nContent-Length: ");
    hw_u64(&w, (uint64_t)n);
    hw_put(&w, "\r\n", 2);
    if (extra)
        hw_str(&w, extra);
    resp_head_end(x, &w, x->head_only ? BODY_NONE : BODY_LENGTH);
    if (!x->head_only)
        spool_append(&x->out, body, n);
    x->resp_done = true;
}
