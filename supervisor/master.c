/* The master's life: sockets and scoreboard before the first worker, the
 * loop with its signals and timers, and an orderly stop. */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "listenq.h"
#include "log.h"
#include "stdio_capture.h"
#include "unavailable.h"

static bool add_listen(struct master *m, int fd, const char *name, bool inherited)
{
    if (m->n_listen == SUP_MAX_LISTEN) {
        as_err("more than %d listening sockets", SUP_MAX_LISTEN);
        return false;
    }
    m->listen_fd[m->n_listen] = fd;
    m->listen_name[m->n_listen] = strdup(name);
    m->listen_inherited[m->n_listen] = inherited;
    m->n_listen++;
    return true;
}

/* Every socket systemd passed serves the app, named in listen= or not: a
 * socket nobody accepts on would leave its clients hanging. */
static bool add_unclaimed(struct master *m)
{
    int fds[SUP_MAX_LISTEN];
    size_t n = as_inherited_unclaimed(fds, SUP_MAX_LISTEN);
    struct sockaddr_storage ss;
    socklen_t len;
    char name[160];

    for (size_t i = 0; i < n; i++) {
        len = sizeof ss;
        if (getsockname(fds[i], (struct sockaddr *)&ss, &len) < 0) {
            as_err("inherited fd %d: getsockname: %s", fds[i], strerror(errno));
            return false;
        }
        as_addr_format((struct sockaddr *)&ss, len, name, sizeof name);
        as_notice("serving %s too: systemd passed it although no listen= names it", name);
        if (!add_listen(m, fds[i], name, true))
            return false;
    }
    return true;
}

static bool open_sockets(struct master *m)
{
    char err[256];
    bool inherited;
    int fd;

    for (size_t i = 0; i < m->cfg.listen.n; i++) {
        fd = as_listen_open(m->cfg.listen.v[i], "app", SOMAXCONN, &inherited, err, sizeof err);
        if (fd < 0) {
            as_err("%s:%d: listen = %s: %s", m->cfg.path, m->cfg.listen.line[i], m->cfg.listen.v[i], err);
            return false;
        }
        if (!add_listen(m, fd, m->cfg.listen.v[i], inherited))
            return false;
    }
    return add_unclaimed(m);
}

static bool open_scoreboard(struct master *m)
{
    m->sb_fd = memfd_create("appstack-scoreboard", MFD_CLOEXEC);
    if (m->sb_fd < 0 || ftruncate(m->sb_fd, sizeof *m->sb) < 0) {
        as_err("scoreboard: %s", strerror(errno));
        return false;
    }
    m->sb = mmap(NULL, sizeof *m->sb, PROT_READ | PROT_WRITE, MAP_SHARED, m->sb_fd, 0);
    if (m->sb == MAP_FAILED) {
        m->sb = NULL;
        as_err("scoreboard: mmap: %s", strerror(errno));
        return false;
    }
    return true;
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct master *m = s->data;

    (void)loop;
    (void)revents;
    switch (s->signum) {
    case SIGTERM: lifecycle_stop(m, false); break;
    case SIGINT:
    case SIGQUIT: lifecycle_stop(m, true); break;
    case SIGHUP: lifecycle_reload(m, NULL); break;
    case SIGTTIN: lifecycle_scale(m, lifecycle_target(m) + 1); break;
    case SIGTTOU: lifecycle_scale(m, lifecycle_target(m) - 1); break;
    }
}

static void child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
    (void)loop;
    (void)revents;
    /* libev reaps every exited child (waitpid loop) and calls us per pid. */
    lifecycle_child_exited(c->data, c->rpid, c->rstatus);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    lifecycle_tick(t->data);
    as_log_flush();     /* entries that waited for a stalled journal */
}

static void spawn_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    lifecycle_spawn_due(t->data);
}

static void start_watchers(struct master *m)
{
    static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU };

    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        ev_signal_init(&m->sig_w[i], signal_cb, sigs[i]);
        m->sig_w[i].data = m;
        ev_signal_start(m->loop, &m->sig_w[i]);
    }
    ev_child_init(&m->child_w, child_cb, 0, 0);
    m->child_w.data = m;
    ev_child_start(m->loop, &m->child_w);
    ev_timer_init(&m->heartbeat_w, heartbeat_cb, SUP_HEARTBEAT, SUP_HEARTBEAT);
    m->heartbeat_w.data = m;
    ev_timer_start(m->loop, &m->heartbeat_w);
    ev_init(&m->spawn_w, spawn_cb);
    m->spawn_w.data = m;
    notify_init(m);
}

_Static_assert(SUP_MAX_LISTEN <= 64, "the scoreboard's take_queued has a bit per listening socket");

void master_refuse_new(struct master *m)
{
    uint64_t take = 0;

    for (int i = 0; i < m->n_listen; i++) {
        if (m->listen_inherited[i])
            continue;
        take |= UINT64_C(1) << i;
        if (as_listen_refuse_new(m->listen_fd[i]))
            continue;
        if (errno == EPERM)
            /* A kernel that allows socket filters only with CAP_NET_ADMIN
             * (an unprivileged container): the workers then take new
             * connections too, until none comes (worker/loop.c). */
            as_info("%s stays open to new connections until the workers find its queue empty: %s",
                    m->listen_name[i], strerror(errno));
        else
            as_warn("%s: cannot stop new connections: %s", m->listen_name[i], strerror(errno));
    }
    m->sb->take_queued = take;
}

void master_close_bound_sockets(struct master *m)
{
    for (int i = 0; i < m->n_listen; i++) {
        if (m->listen_inherited[i] || m->listen_fd[i] < 0)
            continue;
        if (close(m->listen_fd[i]) < 0)
            as_warn("%s: close: %s", m->listen_name[i], strerror(errno));
        m->listen_fd[i] = -1;
    }
}

/* Only what appstackd bound itself is removed; systemd's sockets outlive us. */
static void close_sockets(struct master *m)
{
    for (int i = 0; i < m->n_listen; i++) {
        if (!m->listen_inherited[i] && !strncmp(m->listen_name[i], "unix:", 5) && unlink(m->listen_name[i] + 5) < 0)
            as_warn("cannot remove %s: %s", m->listen_name[i], strerror(errno));
        if (m->listen_fd[i] >= 0)
            close(m->listen_fd[i]);
        free(m->listen_name[i]);
    }
    m->n_listen = 0;
}

static void cleanup(struct master *m)
{
    stdio_drain_all();
    unavailable_close();
    control_stop_done(m);
    control_close(m);
    sup_metrics_close(m);
    lifecycle_free(m);
    listen_queue_close();
    close_sockets(m);
    if (m->sb)
        munmap(m->sb, sizeof *m->sb);
    if (m->sb_fd >= 0)
        close(m->sb_fd);
    free(m->worker_path);
    free(m->groups);
    ev_loop_destroy(m->loop);
}

int master_run(struct master *m)
{
    int rc = 1;

    m->sb_fd = -1;
    m->control_fd = -1;
    m->loop = ev_default_loop(EVFLAG_AUTO);
    if (!m->loop) {
        as_err("cannot initialise libev");
        return 1;
    }
    m->started = ev_time();
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || !stdio_init() || !spawn_prepare(m) || !open_sockets(m) || !open_scoreboard(m) ||
        !control_open(m) || !sup_metrics_open(m))
        goto out;
    start_watchers(m);
    lifecycle_init(m);
    as_notice("appstackd %s started: %d workers, control socket %s", PACKAGE_VERSION, m->cfg.workers,
              m->cfg.control);
    lifecycle_start(m);
    ev_run(m->loop, 0);
    as_notice("stopped");
    rc = 0;
out:
    cleanup(m);
    return rc;
}
