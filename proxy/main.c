/* appstack-proxy: command line, start-up, signals, systemd notification. */
#include "proxy.h"
#include "http_date.h"
#include "tls.h"
#include "metrics.h"
#include "mime.h"
#include "master.h"
#include "memtrim.h"
#include "compress.h"
#include "request_id.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define STOP_GRACE 30.0     /* TERM: in-flight requests get this long */

struct server srv = { .slot = -1 };

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

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    master_beat();
    runtime_revalidate(srv.rt);
    as_log_flush();     /* entries that waited for a stalled journal */
    mem_trim_tick(srv.n_conns);
}

static void stop_now_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    as_warn("%ld connections still busy after %gs: exiting", srv.n_conns, STOP_GRACE);
    ev_break(loop, EVBREAK_ALL);
}

/* TERM or INT: the whole proxy stops (the master says so on the board), or
 * this process alone retires (fewer `workers` after a reload, or a signal
 * sent to it alone): either way it stops accepting and finishes what it
 * has. A retiring process leaves the metrics listen to the others. */
static void begin_stop(void)
{
    if (srv.stopping)
        return;
    srv.stopping = true;
    as_info("%s: %ld connections open", board->stopping ? "stopping" : "retiring", srv.n_conns);
    srv.accepting = false;
    as_accept_rest_stop(srv.loop, &srv.accept_rest);
    if (board->stopping)
        conns_take_queued();        /* the sockets are the master's: only when all stop */
    else
        pm_server_serve(false);
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

/* HUP from the master, which has read the file already: this process
 * reads it again for itself (its connections stay; the next request uses
 * the new configuration) and says how it went. */
static void reload(void)
{
    struct runtime *rt, *old = srv.rt;

    rt = runtime_load(srv.config_path, false);
    if (rt && !runtime_load_tls(rt)) {
        runtime_put(rt);
        rt = NULL;
    }
    if (rt && !rt->tls && old->tls) {
        as_err("reload: %s: the TLS listens opened at start need certificates; keeping the running configuration",
               srv.config_path);
        runtime_put(rt);
        rt = NULL;
    }
    if (!rt) {
        master_tell(NEWS_RELOAD_FAILED);
        return;
    }
    srv.rt = rt;
    as_log_set_format(rt->cfg.proxy_log_format);
    runtime_retire(old, rt);
    runtime_put(old);
    health_configure();
    master_tell(NEWS_RELOADED);     /* the master says it once for all */
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (!srv.stopping)
        reload();
}

/* In the master: the sockets every process accepts on (their watchers
 * start in each serving process). */
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

/* A serving process does not preempt the app's workers when a socket wakes
 * it (docs/proxy.md, "Scheduling"): SCHED_BATCH keeps its fair share of
 * the CPU but waits for the running task's slice, so on a saturated CPU it
 * handles many events per wakeup instead of switching out a worker for
 * each. With an idle CPU it runs at once, as before. A policy the
 * administrator chose (chrt, systemd's CPUSchedulingPolicy=) is kept. */
static void yield_on_wakeup(void)
{
    struct sched_param sp = { .sched_priority = 0 };
    int policy = sched_getscheduler(0);

    if (policy < 0)
        as_warn("sched_getscheduler: %s", strerror(errno));
    else if (policy == SCHED_OTHER && sched_setscheduler(0, SCHED_BATCH, &sp) < 0)
        as_warn("SCHED_BATCH: %s", strerror(errno));
}

void proxy_serve(int slot, const sigset_t *mask)
{
    yield_on_wakeup();
    srv.slot = slot;
    pm_use(slot);
    /* The certificates are loaded here, not in the master (tls_check.c).
     * The master's check passed moments ago; a file changed since then
     * must not leave this process serving TLS listens without them. */
    if (!runtime_load_tls(srv.rt)) {
        as_err("the certificates of %s do not load (above): this proxy process exits", srv.config_path);
        as_log_flush();
        exit(1);
    }
    as_request_id_reseed();     /* request IDs unique per process, not copied at fork */
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
    ev_timer_init(&srv.tick, tick_cb, 1.0, 1.0);
    ev_timer_start(srv.loop, &srv.tick);
    signal(SIGUSR1, SIG_IGN);      /* the master's (ACME), should one reach us */
    sigprocmask(SIG_SETMASK, mask, NULL);
    access_log_init(srv.loop);
    runtime_revalidate(srv.rt);
    as_accept_rest_init(&srv.accept_rest, srv.lio, srv.n_listen);
    for (int i = 0; i < srv.n_listen; i++)
        ev_io_start(srv.loop, &srv.lio[i]);
    pm_server_serve(true);
    srv.accepting = true;
    health_configure();
    master_tell(NEWS_READY);
    ev_run(srv.loop, 0);
    access_log_flush();
    compress_release();
    as_info("stopped after %llu requests", (unsigned long long)srv.requests);
    exit(0);
}

static int run(const char *path)
{
    uint64_t usec = 0;

    srv.config_path = path;
    if (!tls_tickets_seed())
        return 1;
    srv.rt = runtime_load(path, true);
    if (!srv.rt)
        return 1;
    if (!tls_check_aside(srv.rt))
        return 1;
    as_log_set_format(srv.rt->cfg.proxy_log_format);
    srv.loop = ev_default_loop(EVFLAG_AUTO);
    srv.notify = getenv("NOTIFY_SOCKET") != NULL;
    if (sd_watchdog_enabled(0, &usec) > 0)
        srv.watchdog_interval = (double)usec / 1e6;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    mime_load("/etc/mime.types");
    forward_init();
    {
        const char *tmp = getenv("TMPDIR");
        spool_set_tmpdir(tmp && *tmp ? tmp : "/var/tmp");
    }
    if (!pm_init(PROXY_SLOTS))
        as_warn("metrics: no shared memory for the counters: %s", strerror(errno));
    if (!open_listeners(&srv.rt->cfg) || !pm_server_open() || !drop_privileges(&srv.rt->cfg))
        return 1;
    pm_server_serve(false);     /* the serving processes answer scrapes */
    return master_run();
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
