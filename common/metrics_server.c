/* The metrics listen (metrics_server.h). A connection reads one request
 * head through the shared HTTP/1 parser, gets its whole answer built in
 * memory and written as the socket takes it, then closes. */
#include "metrics_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accept_rest.h"
#include "http_date.h"
#include "http_parse.h"
#include "http_reply.h"
#include "listen.h"
#include "log.h"

#define MS_READ_MAX 8192

struct ms_conn {
    struct ms_conn *next;
    struct metrics_server *s;
    int fd;
    ev_io io;
    ev_timer timer;
    struct as_http_request req;
    char *out;
    size_t out_len, out_off;
};

static const struct as_http_limits limits = {
    .max_request_line = 2048,
    .max_fields = 64,
    .max_field_size = 4096,
    .max_header_bytes = MS_READ_MAX,
    .max_body = 0,
};

static uint64_t mono_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void conn_close(struct ms_conn *c)
{
    struct ms_conn **p;

    for (p = &c->s->conns; *p && *p != c; p = &(*p)->next)
        ;
    if (*p)
        *p = c->next;
    c->s->n_conns--;
    ev_io_stop(c->s->loop, &c->io);
    ev_timer_stop(c->s->loop, &c->timer);
    close(c->fd);
    as_http_free(&c->req);
    free(c->out);
    free(c);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(t->data);
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct ms_conn *c = io->data;

    (void)loop;
    (void)revents;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0)
            break;      /* the scraper went away */
        c->out_off += (size_t)n;
    }
    conn_close(c);
}

/* Takes BODY (malloc'ed, may be NULL when BODY_LEN is 0) into one
 * response and starts writing it. */
static void respond(struct ms_conn *c, int status, const char *type, char *body, size_t body_len, bool head_only)
{
    char head[AS_HTTP_REPLY_MAX + 256];
    size_t n = as_http_status_head(head, sizeof head, status, as_http_date_now(time(NULL)));

    n += (size_t)snprintf(head + n, sizeof head - n, "Content-Type: %s\r\nContent-Length: %zu\r\n%s"
                          "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                          type, body_len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (head_only)
        body_len = 0;
    c->out = malloc(n + body_len);
    if (!c->out) {
        free(body);
        conn_close(c);
        return;
    }
    memcpy(c->out, head, n);
    if (body_len)
        memcpy(c->out + n, body, body_len);
    free(body);
    c->out_len = n + body_len;
    ev_io_stop(c->s->loop, &c->io);
    ev_io_init(&c->io, write_cb, c->fd, EV_WRITE);
    c->io.data = c;
    ev_io_start(c->s->loop, &c->io);
    write_cb(c->s->loop, &c->io, EV_WRITE);
}

static void respond_text(struct ms_conn *c, int status, const char *text, bool head_only)
{
    char *body = strdup(text);

    respond(c, status, "text/plain; charset=utf-8", body, body ? strlen(body) : 0, head_only);
}

static void serve_metrics(struct ms_conn *c, bool head_only)
{
    struct metrics_server *s = c->s;
    struct prom p = { 0 };
    uint64_t t0 = mono_usec();

    s->scrapes++;
    s->metrics(s->ctx, &p);
    metrics_server_text(s, &p);
    s->last_scrape_usec = mono_usec() - t0;
    if (p.oom) {
        prom_free(&p);
        respond_text(c, 500, "500 out of memory\n", head_only);
        return;
    }
    respond(c, 200, PROM_CONTENT_TYPE, p.s, p.len, head_only);
}

static void serve_health(struct ms_conn *c, bool head_only)
{
    const char *why = "not ready";
    char text[256];

    if (c->s->ready(c->s->ctx, &why)) {
        respond_text(c, 200, "ready\n", head_only);
        return;
    }
    snprintf(text, sizeof text, "not ready: %s\n", why);
    respond_text(c, 503, text, head_only);
}

/* "/metrics" or "/metrics?anything" */
static bool is_path(const struct as_http_request *r, const char *path)
{
    size_t n = strlen(path);

    return r->target_len >= n && !memcmp(r->target, path, n) && (r->target_len == n || r->target[n] == '?');
}

static void serve(struct ms_conn *c)
{
    const struct as_http_request *r = &c->req;
    bool head_only = !strcmp(r->method, "HEAD");

    if (strcmp(r->method, "GET") && !head_only)
        respond_text(c, 405, "405 Method Not Allowed\n", false);
    else if (is_path(r, "/metrics"))
        serve_metrics(c, head_only);
    else if (is_path(r, "/healthz"))
        serve_health(c, head_only);
    else
        respond_text(c, 404, "404 Not Found: try /metrics or /healthz\n", head_only);
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct ms_conn *c = io->data;
    char buf[2048];
    ssize_t n;

    (void)loop;
    (void)revents;
    n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    as_http_feed(&c->req, buf, (size_t)n);
    if (c->req.state == AS_HTTP_ERROR) {
        char text[64];
        snprintf(text, sizeof text, "%d %s\n", c->req.status ? c->req.status : 400,
                 as_http_reason(c->req.status ? c->req.status : 400));
        respond_text(c, c->req.status ? c->req.status : 400, text, false);
    } else if (c->req.state != AS_HTTP_HEAD) {
        serve(c);       /* a body, if any, is not read: the connection closes */
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct metrics_server *s = io->data;
    struct ms_conn *c;
    int fd;

    (void)revents;
    for (;;) {
        fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (as_accept_rest_failed(loop, &s->rest, errno, s->n_conns) == AS_ACCEPT_AGAIN)
                continue;
            return;
        }
        if (s->n_conns >= MS_MAX_CONNS || !(c = calloc(1, sizeof *c))) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        c->next = s->conns;
        s->conns = c;
        s->n_conns++;
        as_http_init(&c->req, &limits);
        ev_io_init(&c->io, read_cb, fd, EV_READ);
        c->io.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->timer, timeout_cb, MS_TIMEOUT, 0);
        c->timer.data = c;
        ev_timer_start(loop, &c->timer);
    }
}

bool metrics_server_open(struct metrics_server *s, struct ev_loop *loop, const char *addr, char *err, size_t errlen)
{
    s->loop = loop;
    s->fd = as_listen_open(addr, "metrics", 64, &s->inherited, err, errlen);
    if (s->fd < 0)
        return false;
    /* systemd's socket may be blocking: accept must never block the loop. */
    if (fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "O_NONBLOCK: %s", strerror(errno));
        close(s->fd);
        s->fd = -1;
        return false;
    }
    s->addr = strdup(addr);
    if (!s->addr) {
        snprintf(err, errlen, "out of memory");
        close(s->fd);
        s->fd = -1;
        return false;
    }
    ev_io_init(&s->accept_w, accept_cb, s->fd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(loop, &s->accept_w);
    as_accept_rest_init(&s->rest, &s->accept_w, 1);
    return true;
}

void metrics_server_serve(struct metrics_server *s, bool on)
{
    if (s->fd < 0)
        return;
    if (on)
        ev_io_start(s->loop, &s->accept_w);
    else
        as_accept_rest_stop(s->loop, &s->rest);
}

void metrics_server_close(struct metrics_server *s)
{
    if (!s->addr)
        return;
    while (s->conns)
        conn_close(s->conns);
    as_accept_rest_stop(s->loop, &s->rest);
    close(s->fd);
    if (!s->inherited && !strncmp(s->addr, "unix:", 5) && unlink(s->addr + 5) < 0 && errno != ENOENT)
        as_warn("cannot remove %s: %s", s->addr + 5, strerror(errno));
    free(s->addr);
    s->addr = NULL;
    s->fd = -1;
}

void metrics_server_text(const struct metrics_server *s, struct prom *p)
{
    prom_family(p, "appstack_metrics_scrapes_total", "counter", "Requests for /metrics answered by this process.");
    prom_u64(p, "appstack_metrics_scrapes_total", NULL, s->scrapes);
    prom_family(p, "appstack_metrics_scrape_duration_seconds", "gauge",
                "Time this process took to build the previous /metrics answer.");
    prom_seconds(p, "appstack_metrics_scrape_duration_seconds", NULL, s->last_scrape_usec);
}
