/* One access log entry per response: a readable combined-style MESSAGE and
 * the fields appstack(7) makes queryable (HTTP_STATUS=502 ...).
 *
 * Every request pays for this, so it avoids printf and localtime (the date
 * is formatted once a second), and on stderr (no journal) the lines of one
 * loop turn go out in one write just before the loop waits again, in the
 * common logger's line format (text or JSON lines), instead of one write
 * per request. */
#include "upstream.h"
#include "fmt.h"
#include "site.h"
#include "http_date.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF (64u << 10)
#define LINE_MAX_LEN 4096       /* longer entries are cut */
#define TARGET_MAX 1024
#define HEADER_MAX 255

static struct {
    ev_prepare flush_w;
    bool journal;
    size_t piece;               /* the most one write may carry (see access_log_flush) */
    char prefix[64];            /* "appstack-proxy[PID]: " */
    size_t prefix_len;
    size_t len;
    char buf[LOG_BUF];
} al;

/* All proxy processes write to the same stderr. A regular file takes each
 * write whole; a pipe or a socket only up to PIPE_BUF, beyond which two
 * processes' writes may mix: there the lines go out in pieces of whole
 * lines up to that size. */
void access_log_flush(void)
{
    size_t off = 0;

    while (off < al.len) {
        size_t len = al.len - off;
        if (len > al.piece) {
            const char *nl = memrchr(al.buf + off, '\n', al.piece);
            len = nl ? (size_t)(nl - (al.buf + off)) + 1 : al.piece;
        }
        ssize_t n = write(STDERR_FILENO, al.buf + off, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;              /* nowhere to log: drop, never stall the loop */
        off += (size_t)n;
    }
    al.len = 0;
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    if (al.len)
        access_log_flush();
}

void access_log_init(struct ev_loop *loop)
{
    struct stat st;

    al.piece = fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode) ? sizeof al.buf : PIPE_BUF;
    al.journal = as_log_to_journal();
    al.prefix_len = (size_t)snprintf(al.prefix, sizeof al.prefix, "appstack-proxy[%d]: ", (int)getpid());
    ev_prepare_init(&al.flush_w, flush_cb);
    ev_prepare_start(loop, &al.flush_w);
    ev_unref(loop);             /* the flusher alone does not keep the loop running */
}

/* "22/Nov/2026:08:08:26 +0000", local time, formatted once a second. */
static const char *log_time(void)
{
    static char buf[AS_CLF_DATE_LEN + 1];
    static time_t last = -1;
    time_t now = (time_t)ev_now(srv.loop);

    if (now != last) {
        last = now;
        as_clf_date_format(now, buf);
    }
    return buf;
}

static void put_header(struct fmt *f, const struct as_http_request *r, const char *name)
{
    const struct as_http_header *h = as_http_header(r, name);

    fmt_char(f, '"');
    if (h)
        fmt_mem(f, h->value, h->value_len < HEADER_MAX ? h->value_len : HEADER_MAX);
    else
        fmt_char(f, '-');
    fmt_char(f, '"');
}

/* seconds with six decimals */
static void put_seconds(struct fmt *f, long long usec)
{
    fmt_u64(f, (uint64_t)(usec / 1000000));
    fmt_char(f, '.');
    fmt_u64_width(f, (uint64_t)(usec % 1000000), 6);
}

static void add_field(struct fmt *f, const char **field, const char *name, const char *v, size_t vl)
{
    *field = f->p;
    fmt_str(f, name);
    fmt_mem(f, v, vl);
    fmt_char(f, '\0');
}

/* The entry with its fields: to the journal, or as a JSON line
 * (log_format = json) among the lines of this loop turn. */
static void with_fields(const struct exchange *x, const char *msg, size_t mlen, const char *method, size_t plen,
                        long long usec, const char *upstream, const char *site, long long queue_usec)
{
    char buf[2048], num[20], entry[16384];
    struct fmt f = { buf, buf + sizeof buf - 1 };
    const char *fields[8];
    size_t n = 6;
    const char *path = plen ? x->req->target : "";
    size_t len;

    add_field(&f, &fields[0], "HTTP_METHOD=", method, strlen(method));
    add_field(&f, &fields[1], "HTTP_PATH=", path, plen < TARGET_MAX ? plen : TARGET_MAX);
    add_field(&f, &fields[2], "HTTP_STATUS=", num, fmt_utoa((uint64_t)x->status, num));
    add_field(&f, &fields[3], "HTTP_DURATION_USEC=", num, fmt_utoa((uint64_t)usec, num));
    add_field(&f, &fields[4], "APPSTACK_UPSTREAM=", upstream, strlen(upstream));
    add_field(&f, &fields[5], "APPSTACK_SITE=", site, strlen(site));
    add_field(&f, &fields[n++], "APPSTACK_REQUEST_ID=", x->id, strlen(x->id));
    if (queue_usec >= 0)
        add_field(&f, &fields[n++], "APPSTACK_QUEUE_USEC=", num, fmt_utoa((uint64_t)queue_usec, num));
    *f.p = '\0';
    if (al.journal) {
        as_log_fields(LOG_INFO, msg, fields, n);
        return;
    }
    if (!as_log_json(entry, sizeof entry, &len, LOG_INFO, msg, mlen, fields, n))
        return;                 /* cannot happen: the line and the fields are bounded */
    if (al.len + len > sizeof al.buf)
        access_log_flush();
    memcpy(al.buf + al.len, entry, len);
    al.len += len;
}

void access_log(struct exchange *x)
{
    const struct as_http_request *r = x->req;
    bool parsed = r && r->method && r->state != AS_HTTP_HEAD;
    /* a WebSocket over HTTP/2 is the client's CONNECT (the upstream's GET) */
    const char *method = parsed ? (x->h2_ws ? "CONNECT" : r->method) : "-";
    const char *upstream = x->static_req ? "-" : x->upstream ? x->upstream->name : "-";
    /* A request refused before its Host was read has no site. */
    const char *site = x->site ? x->site->name : "-";
    long long usec = (long long)x->usec;
    /* How long it waited for a worker; -1: it never went to one */
    long long queue_usec = x->static_req || !x->upstream ? -1 : (long long)(x->queue_wait * 1e6);
    char line[LINE_MAX_LEN];
    struct fmt f = { line, line + sizeof line - 1 };
    size_t plen = 0, tlen;

    if (x->site ? !x->site->access_log : !x->rt->cfg.access_log)
        return;
    if (parsed)
        for (plen = 0; plen < r->target_len && r->target[plen] != '?'; plen++)
            ;
    fmt_str(&f, x->client);
    fmt_mem(&f, " - - [", 6);
    fmt_str(&f, log_time());
    fmt_mem(&f, "] \"", 3);
    fmt_str(&f, method);
    fmt_char(&f, ' ');
    if (parsed) {
        tlen = r->target_len < TARGET_MAX ? r->target_len : TARGET_MAX;
        fmt_mem(&f, r->target, tlen);
    } else {
        fmt_char(&f, '-');
    }
    fmt_mem(&f, " HTTP/", 6);
    fmt_u64(&f, x->h2 ? 2 : parsed ? (uint64_t)r->http_major : 1);
    fmt_char(&f, '.');
    fmt_u64(&f, x->h2 ? 0 : parsed ? (uint64_t)r->http_minor : 1);
    fmt_mem(&f, "\" ", 2);
    fmt_u64(&f, (uint64_t)x->status);
    fmt_char(&f, ' ');
    fmt_u64(&f, x->out.sent);
    fmt_char(&f, ' ');
    if (parsed) {
        put_header(&f, r, "Referer");
        fmt_char(&f, ' ');
        put_header(&f, r, "User-Agent");
    } else {
        fmt_mem(&f, "\"-\" \"-\"", 7);
    }
    fmt_char(&f, ' ');
    put_seconds(&f, usec);
    fmt_char(&f, ' ');
    if (queue_usec >= 0)
        put_seconds(&f, queue_usec);
    else
        fmt_char(&f, '-');
    fmt_char(&f, ' ');
    fmt_str(&f, upstream);
    if (x->rt->cfg.n_sites) {
        fmt_char(&f, ' ');      /* with [site]s, which one answered */
        if (x->site)
            fmt_mem(&f, x->site->name, x->site->name_len);
        else
            fmt_char(&f, '-');
    }
    if (al.journal || as_log_format() == AS_LOG_JSON) {
        *f.p = '\0';
        with_fields(x, line, (size_t)(f.p - line), method, plen, usec, upstream, site, queue_usec);
        return;
    }
    if (al.len + al.prefix_len + (size_t)(f.p - line) + 1 > sizeof al.buf)
        access_log_flush();
    memcpy(al.buf + al.len, al.prefix, al.prefix_len);
    al.len += al.prefix_len;
    memcpy(al.buf + al.len, line, (size_t)(f.p - line));
    al.len += (size_t)(f.p - line);
    al.buf[al.len++] = '\n';
}
