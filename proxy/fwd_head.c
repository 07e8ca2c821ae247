/* The HTTP/1.1 part of an upstream request head (see fwd_head.h). */
#include "fwd_head.h"

#include "http_fields.h"
#include "worker_ident.h"

/* Request fields the proxy does not pass on: hop-by-hop ones (the table
 * in common/http_fields.c), those it writes itself (Content-Length, the
 * X-Forwarded trio, Forwarded, X-Request-ID) and Expect (it answered 100
 * Continue itself). */
static bool dropped_request_field(const char *name, size_t len)
{
    return as_http_hop_by_hop(name, len) || as_http_name_is(name, len, "Content-Length") ||
           as_http_name_is(name, len, "Expect") || as_http_name_is(name, len, "X-Forwarded-For") ||
           as_http_name_is(name, len, "X-Forwarded-Proto") || as_http_name_is(name, len, "X-Forwarded-Host") ||
           as_http_name_is(name, len, AS_WORKER_FIELD) || as_http_name_is(name, len, "Forwarded") ||
           as_http_name_is(name, len, "X-Request-ID");
}

/* Named by the client's Connection field: hop-by-hop for this hop too
 * (RFC 9110 7.6.1). Not Host: it routes the request, and a client must not
 * be able to take it away from the upstream. */
static bool connection_option(const struct as_http_header *conn, const char *name, size_t len)
{
    return conn && !as_http_name_is(name, len, "Host") && as_http_list_has_n(conn->value, conn->value_len, name, len);
}

void fwd_request_head(struct headw *h, const struct as_http_request *r, const struct as_http_header *conn,
                      const char *local_host)
{
    hw_str(h, r->method);
    hw_put(h, " ", 1);
    hw_put(h, r->path, r->path_len);
    if (r->query) {
        hw_char(h, '?');
        hw_put(h, r->query, r->query_len);
    }
    hw_put(h, " HTTP/1.1\r\n", 11);
    if (!r->host)
        hw_header(h, "Host", 4, local_host, strlen(local_host));
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct as_http_header *f = &r->headers[i];
        if (dropped_request_field(f->name, f->name_len) || connection_option(conn, f->name, f->name_len))
            continue;
        hw_header(h, f->name, f->name_len, f->value, f->value_len);
    }
}
