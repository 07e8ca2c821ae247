/* One access log entry per response: a readable combined-style MESSAGE and
 * the fields SPEC.md makes queryable (HTTP_STATUS=502 ...). */
#include "proxy.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *header(const struct as_http_request *r, const char *name)
{
    static char buf[2][256];
    static int k;
    const struct as_http_header *h = as_http_header(r, name);

    if (!h)
        return "-";
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%.*s", (int)h->value_len, h->value);
    return buf[k];
}

void access_log(struct conn *c)
{
    const struct as_http_request *r = c->req;
    char f_method[48], f_path[1100], f_status[32], f_dur[48], f_up[160], msg[2048], when[64];
    const char *fields[5] = { f_method, f_path, f_status, f_dur, f_up };
    bool parsed = r && r->method && r->state != AS_HTTP_HEAD;
    const char *method = parsed ? r->method : "-";
    const char *upstream = c->static_req ? "-" : c->upstream ? c->upstream->name : "-";
    long long usec = (long long)((ev_time() - c->t0) * 1e6);
    size_t plen = 0;
    time_t now = time(NULL);
    struct tm tm;

    if (!c->rt || !c->rt->cfg.access_log)
        return;
    if (parsed)
        for (plen = 0; plen < r->target_len && r->target[plen] != '?'; plen++)
            ;
    snprintf(f_method, sizeof f_method, "HTTP_METHOD=%s", method);
    snprintf(f_path, sizeof f_path, "HTTP_PATH=%.*s", (int)(plen < 1024 ? plen : 1024), parsed ? r->target : "");
    snprintf(f_status, sizeof f_status, "HTTP_STATUS=%d", c->status);
    snprintf(f_dur, sizeof f_dur, "HTTP_DURATION_USEC=%lld", usec < 0 ? 0 : usec);
    snprintf(f_up, sizeof f_up, "APPSTACK_UPSTREAM=%s", upstream);
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
    snprintf(msg, sizeof msg, "%s - - [%s] \"%s %.*s HTTP/%d.%d\" %d %llu \"%s\" \"%s\" %.6f %s",
             c->peer, when, method, parsed ? (int)(r->target_len < 1024 ? r->target_len : 1024) : 1,
             parsed ? r->target : "-", parsed ? r->http_major : 1, parsed ? r->http_minor : 1, c->status,
             (unsigned long long)c->out.sent, parsed ? header(r, "Referer") : "-",
             parsed ? header(r, "User-Agent") : "-", usec / 1e6, upstream);
    as_log_fields(LOG_INFO, msg, fields, 5);
}
