/* Whether an upstream takes requests (upstream.h; docs/proxy.md, "Several
 * upstreams").
 *
 * Passive: failures seen on requests (a connect refused or timed out, no
 * response within proxy_read_timeout) are counted; max_fails of them within
 * fail_timeout take the upstream out for fail_timeout. Then it is on trial:
 * one request at a time until one succeeds, and one more failure takes it
 * out again. max_fails = 0 never takes one out.
 *
 * Active, with health_check = PATH: every health_check_interval each
 * upstream gets "GET PATH" on a connection of its own; an answer below 500
 * keeps it in (the app answered, even to say the Host is not its own), a
 * 5xx, no answer within the interval or a refused connection takes it out
 * until a check passes again. */
#include "upstream.h"
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct upcheck {
    ev_io io;
    struct upstream *u;
    int fd;
    char req[512];
    size_t req_len, sent;
    char resp[64];
    size_t got;
};

static const struct as_config *cfg(void)
{
    return &srv.rt->cfg;
}

bool upstream_up(const struct upstream *u, ev_tstamp now)
{
    return !u->check_failed && u->down_until <= now;
}

bool upstream_healthy(const struct upstream *u, ev_tstamp now)
{
    /* On trial, one request tells whether it is back. */
    return upstream_up(u, now) && !(u->trial && u->outstanding > 0);
}

static void take_out(struct upstream *u, ev_tstamp now, const char *why)
{
    double out = cfg()->fail_timeout;

    u->down_until = now + out;
    u->trial = true;
    u->fails = 0;
    PM_INC(up_marked_down);
    as_warn("upstream %s: %s: out for %gs", u->name, why, out);
    upstream_kick_at(u, u->down_until);     /* then it may take what waits */
}

void upstream_fault(struct upstream *u, const char *why)
{
    ev_tstamp now = ev_now(srv.loop);
    long max = cfg()->max_fails;

    if (!max || u->down_until > now)
        return;
    if (u->trial) {
        take_out(u, now, why);
        return;
    }
    if (!u->fails || now - u->fails_since > cfg()->fail_timeout) {
        u->fails = 0;
        u->fails_since = now;
    }
    if (++u->fails >= max)
        take_out(u, now, why);
}

void upstream_success(struct upstream *u)
{
    u->fails = 0;
    if (u->trial && u->down_until <= ev_now(srv.loop)) {
        u->trial = false;
        as_info("upstream %s: answers again", u->name);
    }
}

/* ---- active checks ------------------------------------------------------ */

static void check_end(struct upstream *u)
{
    struct upcheck *k = u->check;

    if (!k)
        return;
    ev_io_stop(srv.loop, &k->io);
    if (close(k->fd) < 0 && errno != EINTR)
        as_debug("close health check: %s", strerror(errno));
    free(k);
    u->check = NULL;
}

static void check_result(struct upstream *u, bool ok, const char *why)
{
    check_end(u);
    if (ok && u->check_failed) {
        u->check_failed = false;
        as_info("upstream %s: health check passes: back in", u->name);
    }
    if (ok && u->down_until > ev_now(srv.loop)) {
        u->down_until = 0;      /* it answers: no need to wait out the rest */
        u->trial = true;
    }
    if (ok) {
        balancer_kick(u);
        return;
    }
    if (!u->check_failed) {
        u->check_failed = true;
        PM_INC(up_marked_down);
        as_warn("upstream %s: health check GET %s: %s: out until a check passes", u->name, cfg()->health_check,
                why);
    }
}

/* "HTTP/1.x NNN": a status below 500 passes. */
static void check_answer(struct upstream *u, const char *s, size_t n)
{
    int status;

    if (n < 12 || strncmp(s, "HTTP/1.", 7) || s[8] != ' ' || s[9] < '1' || s[9] > '5' || s[10] < '0'
        || s[10] > '9' || s[11] < '0' || s[11] > '9') {
        check_result(u, false, "not an HTTP answer");
        return;
    }
    status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status >= 500) {
        char why[32];
        snprintf(why, sizeof why, "answered %d", status);
        check_result(u, false, why);
        return;
    }
    check_result(u, true, NULL);
}

static void check_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct upcheck *k = (struct upcheck *)w;
    struct upstream *u = k->u;
    int err = 0;
    socklen_t len = sizeof err;
    ssize_t n;

    if (k->sent < k->req_len) {
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            check_result(u, false, strerror(err));
            return;
        }
        n = send(k->fd, k->req + k->sent, k->req_len - k->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                check_result(u, false, strerror(errno));
            return;
        }
        k->sent += (size_t)n;
        if (k->sent == k->req_len) {
            ev_io_stop(loop, &k->io);
            ev_io_set(&k->io, k->fd, EV_READ);
            ev_io_start(loop, &k->io);
        }
        return;
    }
    n = recv(k->fd, k->resp + k->got, sizeof k->resp - k->got, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (k->got)
            check_answer(u, k->resp, k->got);
        else
            check_result(u, false, n < 0 ? strerror(errno) : "closed without an answer");
        return;
    }
    k->got += (size_t)n;
    if (k->got >= 12 || k->got == sizeof k->resp)
        check_answer(u, k->resp, k->got);
}

static void check_start(struct upstream *u)
{
    struct upcheck *k = calloc(1, sizeof *k);
    const char *host = u->addr.sa.ss_family == AF_UNIX ? "localhost" : u->name;

    if (!k) {
        as_err("out of memory for a health check");
        return;
    }
    k->u = u;
    k->fd = socket(u->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        as_err("health check of %s: socket: %s", u->name, strerror(errno));
        free(k);
        return;
    }
    u->check = k;
    k->req_len = (size_t)snprintf(k->req, sizeof k->req,
                                  "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: appstack-proxy health check\r\n"
                                  "Connection: close\r\n\r\n", cfg()->health_check, host);
    if (k->req_len >= sizeof k->req) {
        check_result(u, false, "path too long");
        return;
    }
    ev_io_init(&k->io, check_io_cb, k->fd, EV_WRITE);
    if (connect(k->fd, (const struct sockaddr *)&u->addr.sa, u->addr.len) < 0 && errno != EINPROGRESS) {
        check_result(u, false, strerror(errno));
        return;
    }
    ev_io_start(srv.loop, &k->io);
}

static void check_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct upstream *u = (struct upstream *)((char *)w - offsetof(struct upstream, check_timer));

    if (u->check)
        check_result(u, false, "no answer within health_check_interval");
    check_start(u);
}

void health_stop(struct upstream *u)
{
    if (!srv.loop)
        return;
    check_end(u);
    ev_timer_stop(srv.loop, &u->check_timer);
}

void health_configure(void)
{
    const struct as_config *c = cfg();

    for (struct upstream *u = upstream_registry(); u; u = u->reg_next) {
        if (!u->listed || !c->health_check) {
            health_stop(u);
            u->check_failed = false;    /* nothing checks it any more */
            continue;
        }
        if (ev_is_active(&u->check_timer) && u->check_timer.repeat == c->health_check_interval)
            continue;
        ev_timer_stop(srv.loop, &u->check_timer);
        ev_init(&u->check_timer, check_timer_cb);
        u->check_timer.repeat = c->health_check_interval;
        ev_timer_again(srv.loop, &u->check_timer);
        if (!u->check)
            check_start(u);     /* know at once, not an interval later */
    }
}
