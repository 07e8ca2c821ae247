/* Status lines, the Connection field and short responses (see
 * http_reply.h). Written without printf: the proxy answers static 404s and
 * errors at full request rate. */
#include "http_reply.h"

#include <stdint.h>
#include <string.h>

struct out {
    char *p, *end;
    bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_uint(struct out *o, unsigned long v)
{
    char t[20];
    size_t i = sizeof t;

    do
        t[--i] = (char)('0' + v % 10);
    while (v /= 10);
    put(o, t + i, sizeof t - i);
}

const char *as_http_connection_field(bool keep_alive, bool http10, size_t *len)
{
    static const char close_f[] = "Connection: close\r\n", keep_f[] = "Connection: keep-alive\r\n";

    if (!keep_alive) {
        *len = sizeof close_f - 1;
        return close_f;
    }
    if (http10) {
        *len = sizeof keep_f - 1;
        return keep_f;
    }
    *len = 0;
    return "";
}

static void status_head(struct out *o, int status, const char *date)
{
    put(o, "HTTP/1.1 ", 9);
    put_uint(o, (unsigned long)status);
    put(o, " ", 1);
    put_str(o, as_http_reason(status));
    put_str(o, "\r\nServer: " AS_HTTP_SERVER "\r\nDate: ");
    put_str(o, date);
    put(o, "\r\n", 2);
}

size_t as_http_status_head(char *buf, size_t cap, int status, const char *date)
{
    struct out o = { buf, buf + cap, false };

    status_head(&o, status, date);
    return o.overflow ? 0 : (size_t)(o.p - buf);
}

size_t as_http_error_body(int status, char *buf)
{
    struct out o = { buf, buf + AS_HTTP_ERROR_BODY_MAX, false };

    put_uint(&o, (unsigned long)status);
    put(&o, " ", 1);
    put_str(&o, as_http_reason(status));
    put(&o, "\n", 1);
    return (size_t)(o.p - buf);    /* the longest reason fits */
}

size_t as_http_reply(char *buf, size_t cap, int status, const char *date, bool keep_alive, bool http10,
                     bool head_only, const char *extra)
{
    struct out o = { buf, buf + cap, false };
    char body[AS_HTTP_ERROR_BODY_MAX];
    size_t conn_len, body_len = as_http_error_body(status, body);
    const char *conn = as_http_connection_field(keep_alive, http10, &conn_len);

    status_head(&o, status, date);
    put_str(&o, "Content-Type: " AS_HTTP_ERROR_TYPE "\r\nContent-Length: ");
    put_uint(&o, (unsigned long)body_len);
    put(&o, "\r\n", 2);
    put(&o, conn, conn_len);
    if (extra)
        put_str(&o, extra);
    put(&o, "\r\n", 2);
    if (!head_only)
        put(&o, body, body_len);
    return o.overflow ? 0 : (size_t)(o.p - buf);
}
