/* The master process of appstack-proxy. It holds the listening sockets and
 * the current configuration (both opened before the first fork), forks the
 * serving processes, each a whole proxy on the same sockets, replaces one
 * that dies or stops turning its loop, passes HUP and TERM on, and is the
 * one process that talks to systemd (READY, RELOADING, STOPPING, STATUS=,
 * WATCHDOG). It serves no request itself.
 *
 * Why one listening socket shared by all (each process accepts from the
 * same queue) rather than one SO_REUSEPORT socket per process: a process
 * that dies leaves the queued connections to the others (a SO_REUSEPORT
 * socket's queue dies with it, as resets), a socket from systemd is one
 * descriptor that outlives restarts and is simply inherited, and an idle
 * process takes the next connection instead of a hash choosing a busy one.
 * The cost, every idle process woken for a connection only one of them
 * gets, is bounded by the number of CPUs. docs/proxy.md has the rest. */
#include "master.h"
#include "proxy.h"
#include "metrics.h"
#include "acme.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define STATUS_EVERY 5.0
#define STOP_LIMIT 40.0         /* s after TERM before what is left is killed (processes give 30) */
#define RELOAD_LIMIT 10.0       /* s a reload waits for the processes' answers */
#define QUICK_DEATH 1.0         /* a process that dies younger than this is replaced after RESPAWN_DELAY */
#define RESPAWN_DELAY 1.0
#define STUCK_LIMIT 30.0        /* s without a loop turn before a process is killed and replaced */

struct board *board;

enum proc_state { P_FREE, P_STARTING, P_SERVING, P_RETIRING };

struct proc {
    pid_t pid;
    enum proc_state state;
    bool reload_wanted;         /* the reload under way waits for its answer */
    ev_tstamp started;
};

static struct {
    struct proc procs[PROXY_SLOTS];
    int target;
    pid_t pid;
    int news[2];
    ev_io news_w;
    ev_child child_w;
    ev_signal sig_term, sig_int, sig_hup, sig_usr1;
    ev_timer tick, respawn_w, reload_w, kill_w;
    bool ready_told, stopping, reloading, reload_again;
    int reload_failures;
    ev_tstamp last_watchdog, last_status;
    uint64_t status_answered;
} m = { .news = { -1, -1 } };

int proxy_workers(const struct as_config *cfg)
{
    cpu_set_t set;
    long n;

    if (cfg->proxy_workers != AS_PROXY_WORKERS_AUTO)
        return cfg->proxy_workers;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    else
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > AS_PROXY_MAX_WORKERS ? AS_PROXY_MAX_WORKERS : (int)n;
}

void master_tell(enum news_kind kind)
{
    struct news n = { .slot = srv.slot, .kind = kind };

    /* Non-blocking: a full pipe means the master is stuck, and then the
     * news would not help. */
    if (write(m.news[1], &n, sizeof n) != (ssize_t)sizeof n)
        as_warn("cannot tell the master: %s", strerror(errno));
}

static uint64_t mono_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void master_beat(void)
{
    if (srv.slot >= 0 && srv.slot < PROXY_SLOTS)
        board->beat[srv.slot] = mono_usec();
}

static int count(enum proc_state state)
{
    int n = 0;

    for (int i = 0; i < PROXY_SLOTS; i++)
        n += m.procs[i].state == state;
    return n;
}

static void notify_status(void)
{
    struct pm_counters t;
    ev_tstamp now = ev_now(srv.loop), dt = now - m.last_status;
    uint64_t answered;

    if (!srv.notify)
        return;
    pm_sum(&t);
    answered = pm_answered(&t);
    sd_notifyf(0, "STATUS=%lld connections, %.1f req/s, %lld waiting for a worker, %d processes%s%s%s",
               (long long)(t.open > 0 ? t.open : 0), dt > 0 ? (double)(answered - m.status_answered) / dt : 0.0,
               (long long)(t.up_queued > 0 ? t.up_queued : 0), count(P_SERVING), m.stopping ? ", stopping" : "",
               acme_status()[0] ? "; " : "", acme_status());
    m.last_status = now;
    m.status_answered = answered;
}

/* In the new process: the master's watchers are not its. */
static void forget(void)
{
    ev_signal_stop(srv.loop, &m.sig_term);
    ev_signal_stop(srv.loop, &m.sig_int);
    ev_signal_stop(srv.loop, &m.sig_hup);
    ev_signal_stop(srv.loop, &m.sig_usr1);
    ev_child_stop(srv.loop, &m.child_w);
    ev_io_stop(srv.loop, &m.news_w);
    ev_timer_stop(srv.loop, &m.tick);
    ev_timer_stop(srv.loop, &m.respawn_w);
    ev_timer_stop(srv.loop, &m.reload_w);
    ev_timer_stop(srv.loop, &m.kill_w);
    close(m.news[0]);
    acme_forget();
    srv.notify = false;
}

static bool spawn(int slot)
{
    sigset_t all, old;
    pid_t pid;

    /* Blocked until the new process has its own handlers: a TERM meant for
     * it must not find the master's (or none). */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pm_claim(slot);
    board->beat[slot] = mono_usec();
    pid = fork();
    if (pid == 0) {
        /* Signals come from the master only: a terminal's Ctrl-C goes to
         * the foreground process group, which the master is alone in then. */
        setpgid(0, 0);
        ev_loop_fork(srv.loop);
        forget();
        /* A master killed with SIGKILL takes its processes along, gracefully. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != m.pid)
            _exit(0);
        proxy_serve(slot, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        as_err("cannot start a proxy process: fork: %s", strerror(errno));
        return false;
    }
    m.procs[slot] = (struct proc){ .pid = pid, .state = P_STARTING, .started = ev_now(srv.loop) };
    as_debug("proxy process %d started (slot %d)", (int)pid, slot);
    return true;
}

static void retire(struct proc *p)
{
    p->state = P_RETIRING;
    p->reload_wanted = false;
    if (kill(p->pid, SIGTERM) < 0)
        as_warn("retiring proxy process %d: %s", (int)p->pid, strerror(errno));
}

/* Toward `target` serving processes: the missing ones are started in the
 * lowest free slots, the surplus (highest slots first) retires. */
static void maintain(void)
{
    int live = count(P_STARTING) + count(P_SERVING);

    if (m.stopping)
        return;
    for (int i = PROXY_SLOTS - 1; i >= 0 && live > m.target; i--) {
        struct proc *p = &m.procs[i];
        if (p->state == P_STARTING || p->state == P_SERVING) {
            retire(p);
            live--;
        }
    }
    for (int i = 0; i < PROXY_SLOTS && live < m.target; i++) {
        if (m.procs[i].state == P_FREE) {
            if (!spawn(i))
                break;
            live++;
        }
    }
    if (live < m.target && !ev_is_active(&m.respawn_w)) {
        ev_timer_set(&m.respawn_w, RESPAWN_DELAY, 0);
        ev_timer_start(srv.loop, &m.respawn_w);
    }
}

static void respawn_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    maintain();
}

static void reload_done(void)
{
    ev_timer_stop(srv.loop, &m.reload_w);
    m.reloading = false;
    for (int i = 0; i < PROXY_SLOTS; i++) {
        if (m.procs[i].reload_wanted) {
            as_err("reload: proxy process %d did not answer within %gs", (int)m.procs[i].pid, RELOAD_LIMIT);
            m.procs[i].reload_wanted = false;
        }
    }
    if (m.reload_failures)
        as_err("reload: %d proxy processes kept the configuration they had (see above)", m.reload_failures);
    else
        as_info("reloaded %s: %zu locations, %zu upstreams, %d processes", srv.config_path, srv.rt->n_locs,
                upstream_listed(), m.target);
    if (srv.notify)
        sd_notify(0, "READY=1");
    if (m.reload_again) {
        m.reload_again = false;
        kill(m.pid, SIGHUP);    /* one more turn, from the top */
    }
}

static void reload_check(void)
{
    if (!m.reloading)
        return;
    for (int i = 0; i < PROXY_SLOTS; i++)
        if (m.procs[i].reload_wanted || m.procs[i].state == P_STARTING)
            return;
    reload_done();
}

static void reload_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    reload_done();
}

static bool has_tls_listen(void)
{
    for (int i = 0; i < srv.n_listen; i++)
        if (srv.lflags[i] & AS_LISTEN_SSL)
            return true;
    return false;
}

void master_status_now(void)
{
    notify_status();
}

/* HUP: the master reads the file first; only a good one reaches the
 * processes, which each reload it in place (their connections stay, the
 * next request uses the new configuration), and new processes start with
 * it. READY=1 once every process has answered. */
void master_reload(void)
{
    struct runtime *rt, *old = srv.rt;

    if (m.reloading) {
        m.reload_again = true;
        return;
    }
    if (srv.notify)
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(ev_time() * 1e6));
    rt = runtime_load(srv.config_path, true);
    if (rt && runtime_wants_tls(rt) && !tls_check_aside(rt)) {
        runtime_put(rt);
        rt = NULL;
    }
    if (rt && !runtime_wants_tls(rt) && has_tls_listen()) {
        as_err("reload: %s: the TLS listens opened at start need certificates (a listen change needs a restart); "
               "keeping the running configuration", srv.config_path);
        runtime_put(rt);
        rt = NULL;
    } else if (!rt) {
        as_err("reload: %s has errors (above); keeping the running configuration and certificates",
               srv.config_path);
    }
    if (!rt) {
        if (srv.notify)
            sd_notify(0, "READY=1");
        return;
    }
    srv.rt = rt;
    pm_server_reloaded(rt->cfg.proxy_metrics);
    as_log_set_format(rt->cfg.proxy_log_format);
    runtime_retire(old, rt);
    runtime_put(old);
    m.reloading = true;
    m.reload_failures = 0;
    for (int i = 0; i < PROXY_SLOTS; i++) {
        struct proc *p = &m.procs[i];
        if (p->state != P_STARTING && p->state != P_SERVING)
            continue;
        if (kill(p->pid, SIGHUP) == 0)
            p->reload_wanted = true;
    }
    m.target = proxy_workers(&rt->cfg);
    maintain();
    ev_timer_set(&m.reload_w, RELOAD_LIMIT, 0);
    ev_timer_start(srv.loop, &m.reload_w);
    reload_check();
    acme_poke(true);    /* new domains, a fixed cause of failure: look now */
}

static struct proc *find(pid_t pid, int *slot)
{
    for (int i = 0; i < PROXY_SLOTS; i++) {
        if (m.procs[i].state != P_FREE && m.procs[i].pid == pid) {
            *slot = i;
            return &m.procs[i];
        }
    }
    return NULL;
}

static void news_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct news n;
    ssize_t got;

    while ((got = read(m.news[0], &n, sizeof n)) == (ssize_t)sizeof n) {
        struct proc *p;
        if (n.slot < 0 || n.slot >= PROXY_SLOTS || (p = &m.procs[n.slot])->state == P_FREE)
            continue;
        switch (n.kind) {
        case NEWS_READY:
            if (p->state == P_STARTING)
                p->state = P_SERVING;
            break;
        case NEWS_RELOAD_FAILED:
            m.reload_failures++;
            /* fall through */
        case NEWS_RELOADED:
            p->reload_wanted = false;
            break;
        }
    }
    if (!m.ready_told && count(P_SERVING) >= m.target) {
        m.ready_told = true;
        if (srv.notify)
            sd_notifyf(0, "READY=1\nSTATUS=accepting on %d sockets, %zu upstreams, %d processes", srv.n_listen,
                       upstream_listed(), m.target);
        as_info("ready: %zu locations, %zu upstreams, %d processes", srv.rt->n_locs, upstream_listed(), m.target);
    }
    reload_check();
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    int slot, st = w->rstatus;
    struct proc *p = find(w->rpid, &slot);
    bool expected, quick;

    if (!p) {
        acme_child_exited(w->rpid, st);
        return;
    }
    expected = m.stopping || p->state == P_RETIRING;
    quick = ev_now(loop) - p->started < QUICK_DEATH;
    if (WIFSIGNALED(st))
        as_err("proxy process %d was killed by signal %d (%s)%s", (int)w->rpid, WTERMSIG(st),
               strsignal(WTERMSIG(st)), expected ? "" : ": starting another");
    else if (WEXITSTATUS(st) != 0)
        as_err("proxy process %d exited with status %d%s", (int)w->rpid, WEXITSTATUS(st),
               expected ? "" : ": starting another");
    else if (!expected)
        as_info("proxy process %d exited: starting another", (int)w->rpid);
    pm_forget(slot);
    *p = (struct proc){ .state = P_FREE };
    if (m.stopping) {
        if (count(P_STARTING) + count(P_SERVING) + count(P_RETIRING) == 0)
            ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (!expected && quick) {
        /* Dying at birth again and again: one attempt a second, not a
         * fork storm. */
        if (!ev_is_active(&m.respawn_w)) {
            ev_timer_set(&m.respawn_w, RESPAWN_DELAY, 0);
            ev_timer_start(loop, &m.respawn_w);
        }
    } else if (!ev_is_active(&m.respawn_w)) {
        maintain();
    }
    reload_check();
}

/* A process whose loop has not turned for STUCK_LIMIT is killed; its
 * replacement follows from child_cb. */
static void check_beats(void)
{
    uint64_t now = mono_usec();

    for (int i = 0; i < PROXY_SLOTS; i++) {
        struct proc *p = &m.procs[i];
        if (p->state != P_SERVING && p->state != P_RETIRING)
            continue;
        uint64_t beat = board->beat[i];
        /* A process on another CPU may stamp a time later than `now`
         * between the clock read and this one: that is no lag (unsigned,
         * now - beat would be huge and kill a healthy process). */
        if (now > beat && now - beat > (uint64_t)(STUCK_LIMIT * 1e6)) {
            as_err("proxy process %d has not turned its loop for %gs: killing it", (int)p->pid, STUCK_LIMIT);
            kill(p->pid, SIGKILL);
            board->beat[i] = now;   /* once */
        }
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_tstamp now = ev_now(loop);

    check_beats();
    acme_tick();
    as_log_flush();
    if (srv.watchdog_interval > 0 && now - m.last_watchdog >= srv.watchdog_interval / 2) {
        sd_notify(0, "WATCHDOG=1");
        m.last_watchdog = now;
    }
    if (now - m.last_status >= STATUS_EVERY)
        notify_status();
}

static void kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    for (int i = 0; i < PROXY_SLOTS; i++) {
        if (m.procs[i].state != P_FREE) {
            as_warn("proxy process %d still running %gs after the stop: killing it", (int)m.procs[i].pid,
                    STOP_LIMIT);
            kill(m.procs[i].pid, SIGKILL);
        }
    }
}

/* At a stop, the serving processes take what is queued on the sockets we
 * bound and then close them (conns_take_queued). The master's copies must
 * not outlive theirs: a socket still open here would go on completing
 * handshakes that nobody accepts, reset when the master exits. Sockets
 * from systemd stay: systemd keeps them and their queue. */
static void close_listen_sockets(void)
{
    for (int i = 0; i < srv.n_listen; i++) {
        if (srv.linherited[i] || srv.lfd[i] < 0)
            continue;
        if (close(srv.lfd[i]) < 0)
            as_warn("stopping: close listen socket: %s", strerror(errno));
        srv.lfd[i] = -1;
    }
}

/* TERM (or a first INT): every process stops gracefully; a second INT is
 * passed on too, and they exit at once. */
static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    bool again = m.stopping;

    if (!m.stopping) {
        m.stopping = true;
        board->stopping = 1;
        if (srv.notify)
            sd_notify(0, "STOPPING=1");
        as_info("stopping: %d processes", count(P_STARTING) + count(P_SERVING) + count(P_RETIRING));
        acme_stop();
        ev_timer_stop(loop, &m.respawn_w);
        ev_timer_set(&m.kill_w, STOP_LIMIT, 0);
        ev_timer_start(loop, &m.kill_w);
    }
    if (again && w->signum != SIGINT)
        return;
    for (int i = 0; i < PROXY_SLOTS; i++)
        if (m.procs[i].state != P_FREE)
            kill(m.procs[i].pid, w->signum);
    if (!again)
        close_listen_sockets();
    if (count(P_STARTING) + count(P_SERVING) + count(P_RETIRING) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (!m.stopping)
        master_reload();
}

/* appstack-acme.timer: look at the certificate now. */
static void usr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    if (!m.stopping)
        acme_poke(false);
}

int master_run(void)
{
    void *page = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (page == MAP_FAILED) {
        as_err("shared memory for the proxy processes: %s", strerror(errno));
        return 1;
    }
    board = page;
    if (pipe2(m.news, O_CLOEXEC | O_NONBLOCK) < 0) {
        as_err("pipe: %s", strerror(errno));
        return 1;
    }
    m.pid = getpid();
    m.target = proxy_workers(&srv.rt->cfg);
    m.last_watchdog = m.last_status = ev_now(srv.loop);
    ev_signal_init(&m.sig_term, stop_cb, SIGTERM);
    ev_signal_init(&m.sig_int, stop_cb, SIGINT);
    ev_signal_init(&m.sig_hup, hup_cb, SIGHUP);
    ev_signal_start(srv.loop, &m.sig_term);
    ev_signal_start(srv.loop, &m.sig_int);
    ev_signal_start(srv.loop, &m.sig_hup);
    ev_signal_init(&m.sig_usr1, usr1_cb, SIGUSR1);
    ev_signal_start(srv.loop, &m.sig_usr1);
    /* Any child: the serving processes, and as PID 1 of a container every
     * orphan of its PID namespace (what "podman exec" leaves behind), which
     * the default loop reaps so none stays a zombie. */
    ev_child_init(&m.child_w, child_cb, 0, 0);
    ev_child_start(srv.loop, &m.child_w);
    ev_io_init(&m.news_w, news_cb, m.news[0], EV_READ);
    ev_io_start(srv.loop, &m.news_w);
    ev_timer_init(&m.tick, tick_cb, 1.0, 1.0);
    ev_timer_start(srv.loop, &m.tick);
    ev_init(&m.respawn_w, respawn_cb);
    ev_init(&m.reload_w, reload_timeout_cb);
    ev_init(&m.kill_w, kill_cb);
    as_info("starting %d proxy processes%s", m.target,
            srv.rt->cfg.proxy_workers == AS_PROXY_WORKERS_AUTO ? " (workers = auto: one per CPU)" : "");
    maintain();
    acme_start();
    ev_run(srv.loop, 0);
    ev_timer_stop(srv.loop, &m.kill_w);
    pm_server_close();
    as_info("stopped");
    return 0;
}
