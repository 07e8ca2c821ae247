/* appstack-proxy: command line, start-up, signals, systemd notification. */
#include "proxy.h"
#include "http_date.h"
#include "tls.h"
#include "metrics.h"
#include "mime.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define STATUS_EVERY 5.0
#define STOP_GRACE 30.0     /* TERM: in-flight requests get this long */

struct server srv;

static ev_signal sig_term, sig_int, sig_hup;
static ev_timer stop_timer;

const char *proxy_date(void)
{
    return as_http_date_now((time_t)ev_now(srv.loop));
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: appstack-proxy [-c FILE] [--check]\n"
            "Front proxy of appstack: serves static aliases, forwards the rest to the workers.\n\n"
            "  -c, --config FILE  configuration (default %s, or $APPSTACK_CONFIG)\n"
            "      --check        validate the configuration and exit\n"
            "  -h, --help         this help\n"
            "  -V, --version      version\n",
            AS_DEFAULT_CONFIG);
}

static void notify_status(void)
{
    ev_tstamp now = ev_now(srv.loop), dt = now - srv.last_status;
    double rps = dt > 0 ? (double)(srv.requests - srv.status_requests) / dt : 0;

    srv.last_status = now;
    srv.status_requests = srv.requests;
    if (srv.notify)
        sd_notifyf(0, "STATUS=%ld connections, %.1f req/s, %zu waiting for a worker%s", srv.n_conns, rps,
                   balancer_waiting(), srv.stopping ? ", stopping" : "");
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_tstamp now = ev_now(loop);

    runtime_revalidate(srv.rt);
    as_log_flush();     /* entries that waited for a stalled journal */
    if (srv.watchdog_interval > 0 && now - srv.last_watchdog >= srv.watchdog_interval / 2) {
        sd_notify(0, "WATCHDOG=1");
        srv.last_watchdog = now;
    }
    if (now - srv.last_status >= STATUS_EVERY)
        notify_status();
}

static void stop_now_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    as_warn("%ld connections still busy after %gs: exiting", srv.n_conns, STOP_GRACE);
    ev_break(loop, EVBREAK_ALL);
}

static void begin_stop(void)
{
    if (srv.stopping)
        return;
    srv.stopping = true;
    if (srv.notify)
        sd_notify(0, "STOPPING=1");
    as_info("stopping: %ld connections open", srv.n_conns);
    srv.accepting = false;
    for (int i = 0; i < srv.n_listen; i++)
        ev_io_stop(srv.loop, &srv.lio[i]);
    conns_take_queued();
    conns_stop();
    upstream_close_all_idle();
    if (srv.n_conns == 0) {
        ev_break(srv.loop, EVBREAK_ALL);
        return;
    }
    ev_timer_init(&stop_timer, stop_now_cb, STOP_GRACE, 0);
    ev_timer_start(srv.loop, &stop_timer);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (w->signum == SIGINT && srv.stopping) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    begin_stop();
}

static bool srv_has_tls(void)
{
    for (int i = 0; i < srv.n_listen; i++)
        if (srv.lflags[i] & AS_LISTEN_SSL)
            return true;
    return false;
}

static void reload(void)
{
    struct runtime *rt, *old = srv.rt;

    if (srv.notify)
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(ev_time() * 1e6));
    rt = runtime_load(srv.config_path, true);
    if (rt && !rt->tls && srv_has_tls()) {
        as_err("reload: %s: the TLS listens opened at start need certificates (a listen change needs a restart); "
               "keeping the running configuration", srv.config_path);
        runtime_put(rt);
        rt = NULL;
    } else if (!rt) {
        as_err("reload: %s has errors (above); keeping the running configuration and certificates",
               srv.config_path);
    }
    if (rt) {
        srv.rt = rt;
        pm_server_reloaded(rt->cfg.proxy_metrics);

        as_log_set_format(rt->cfg.proxy_log_format);
        runtime_retire(old, rt);
        runtime_put(old);
        as_info("reloaded %s: %zu locations, %zu upstreams", srv.config_path, rt->n_locs, upstream_listed());
    }
    if (srv.notify)
        sd_notify(0, "READY=1");
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    reload();
}

static bool open_listeners(const struct as_config *cfg)
{
    char err[512];
    bool inherited;

    for (size_t i = 0; i < cfg->proxy_listen.n && i < MAX_LISTEN; i++) {
        bool ssl = cfg->proxy_listen_flags[i] & AS_LISTEN_SSL;
        int fd = as_listen_open(cfg->proxy_listen.v[i], ssl ? "https" : "http", SOMAXCONN, &inherited, err, sizeof err);
        if (fd < 0) {
            as_err("%s", err);
            return false;
        }
        /* Inherited sockets may be blocking; accept must never block. */
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            as_err("%s: O_NONBLOCK: %s", cfg->proxy_listen.v[i], strerror(errno));
            return false;
        }
        srv.lfd[srv.n_listen] = fd;
        srv.linherited[srv.n_listen] = inherited;
        srv.lflags[srv.n_listen] = cfg->proxy_listen_flags[i];
        ev_io_init(&srv.lio[srv.n_listen], conn_accept_cb, fd, EV_READ);
        ev_io_start(srv.loop, &srv.lio[srv.n_listen]);
        srv.n_listen++;
        as_info("listening on %s%s%s", cfg->proxy_listen.v[i], ssl ? " (TLS)" : "", inherited ? " (from systemd)" : "");
    }
    return true;
}

/* After binding: the proxy needs no privilege to serve. */
static bool drop_privileges(const struct as_config *cfg)
{
    struct passwd *pw = NULL;
    struct group *gr = NULL;
    gid_t gid;

    if (!cfg->proxy_user && !cfg->proxy_group)
        return true;
    if (cfg->proxy_user && !(pw = getpwnam(cfg->proxy_user))) {
        as_err("user %s: no such user", cfg->proxy_user);
        return false;
    }
    if (cfg->proxy_group && !(gr = getgrnam(cfg->proxy_group))) {
        as_err("group %s: no such group", cfg->proxy_group);
        return false;
    }
    gid = gr ? gr->gr_gid : pw->pw_gid;
    if ((pw && initgroups(pw->pw_name, gid) < 0) || (!pw && setgroups(0, NULL) < 0) || setgid(gid) < 0
        || (pw && setuid(pw->pw_uid) < 0)) {
        as_err("dropping privileges: %s", strerror(errno));
        return false;
    }
    return true;
}

/* Thousands of keep-alive connections need as many descriptors. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            as_warn("raising the descriptor limit: %s", strerror(errno));
    }
}

static void setup_loop(void)
{
    uint64_t usec = 0;

    srv.loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal_init(&sig_term, signal_cb, SIGTERM);
    ev_signal_init(&sig_int, signal_cb, SIGINT);
    /* A stop seen in the same loop turn as new connections comes first:
     * they are then taken as the stopping server's (conns_take_queued). */
    ev_set_priority(&sig_term, EV_MAXPRI);
    ev_set_priority(&sig_int, EV_MAXPRI);
    ev_signal_init(&sig_hup, hup_cb, SIGHUP);
    ev_signal_start(srv.loop, &sig_term);
    ev_signal_start(srv.loop, &sig_int);
    ev_signal_start(srv.loop, &sig_hup);
    /* As PID 1 of a container the proxy inherits every orphan of its PID
     * namespace (what "podman exec" leaves behind): the default loop's own
     * SIGCHLD watcher reaps any child, so none stays a zombie. */
    ev_timer_init(&srv.tick, tick_cb, 1.0, 1.0);
    ev_timer_start(srv.loop, &srv.tick);
    srv.notify = getenv("NOTIFY_SOCKET") != NULL;
    if (sd_watchdog_enabled(0, &usec) > 0)
        srv.watchdog_interval = (double)usec / 1e6;
}

static int run(const char *path)
{
    srv.config_path = path;
    if (!tls_init())
        return 1;
    srv.rt = runtime_load(path, true);
    if (!srv.rt)
        return 1;
    as_log_set_format(srv.rt->cfg.proxy_log_format);
    setup_loop();
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    mime_load("/etc/mime.types");
    forward_init();
    access_log_init(srv.loop);
    {
        const char *tmp = getenv("TMPDIR");
        spool_set_tmpdir(tmp && *tmp ? tmp : "/var/tmp");
    }
    if (!pm_init(1))
        as_warn("metrics: no shared memory for the counters: %s", strerror(errno));
    if (!open_listeners(&srv.rt->cfg) || !pm_server_open() || !drop_privileges(&srv.rt->cfg))
        return 1;
    srv.accepting = true;
    srv.last_status = srv.last_watchdog = ev_now(srv.loop);
    if (srv.notify)
        sd_notifyf(0, "READY=1\nSTATUS=accepting on %zu sockets, %zu upstreams", (size_t)srv.n_listen,
                   upstream_listed());
    as_info("ready: %zu locations, %zu upstreams", srv.rt->n_locs, upstream_listed());
    ev_run(srv.loop, 0);
    pm_server_close();
    access_log_flush();
    as_info("stopped after %llu requests", (unsigned long long)srv.requests);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    const char *path = NULL;
    bool check = false;
    int o;

    while ((o = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'k': check = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("appstack-proxy %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!path)
        path = as_config_default_path();
    if (check)
        return proxy_check(path);
    as_log_init("appstack-proxy");
    return run(path);
}
