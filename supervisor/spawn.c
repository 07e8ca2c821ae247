/* Starting processes. A worker, or the template of a preloaded generation
 * ([app] preload), is a fork + exec of appstack-worker with the
 * environment of the contract in scoreboard.h; a worker of a preloaded
 * generation is asked of its template instead, which forks it
 * (spawn_fork). Everything that allocates happens in the parent before
 * fork, so the child only makes plain syscalls. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "stdio_capture.h"

extern char **environ;

#define MAX_OWN_ENV 9

/* Variables that belong to appstackd alone: a worker must not answer
 * systemd in the master's name nor look for systemd's sockets. */
static bool private_var(const char *v)
{
    static const char *const names[] = {
        "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "LISTEN_FDS=",
        "LISTEN_PID=", "LISTEN_FDNAMES=", "APPSTACK_WORKER_ID=", "APPSTACK_GENERATION=",
        "APPSTACK_SLOT=", "APPSTACK_SCOREBOARD_FD=", "APPSTACK_CHANNEL_FD=",
        "APPSTACK_LISTEN_FDS=", "APPSTACK_MAX_REQUESTS=", "APPSTACK_LOG_FD=", "APPSTACK_DUMP_FD=",
        "APPSTACK_TEMPLATE=", NULL
    };

    for (int i = 0; names[i]; i++)
        if (!strncmp(v, names[i], strlen(names[i])))
            return true;
    return false;
}

bool spawn_prepare(struct master *m)
{
    char self[PATH_MAX], *slash;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

    /* The worker that was built or installed with this appstackd. */
    if (n > 0) {
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash && asprintf(&m->worker_path, "%.*s/appstack-worker", (int)(slash - self), self) >= 0) {
            if (access(m->worker_path, X_OK) == 0)
                return true;
            free(m->worker_path);
        }
    }
    m->worker_path = strdup(BINDIR "/appstack-worker");
    if (!m->worker_path || access(m->worker_path, X_OK) < 0) {
        as_err("cannot find appstack-worker next to appstackd nor in %s: %s", BINDIR, strerror(errno));
        return false;
    }
    return true;
}

static long max_requests(const struct master *m)
{
    if (m->cfg.max_requests <= 0)
        return 0;
    return m->cfg.max_requests + (m->cfg.max_requests_jitter > 0 ? random() % (m->cfg.max_requests_jitter + 1) : 0);
}

/* Our own variables for the process (a template when W is NULL). */
struct own_env {
    char *v[MAX_OWN_ENV];
    int n;
};

static void add(struct own_env *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct own_env *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&o->v[o->n], fmt, ap) < 0)
        o->v[o->n] = NULL;
    va_end(ap);
    o->n++;
}

static void own_free(struct own_env *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->v[i]);
    o->n = 0;
}

static bool own_vars(const struct master *m, const struct worker *w, unsigned generation, int chan, int dump,
                     struct own_env *o)
{
    char fds[SUP_MAX_LISTEN * 12] = "";

    for (int i = 0; i < m->n_listen; i++)
        snprintf(fds + strlen(fds), sizeof fds - strlen(fds), "%s%d", i ? "," : "", m->listen_fd[i]);
    o->n = 0;
    add(o, "%s=%u", AS_ENV_GENERATION, generation);
    add(o, "%s=%d", AS_ENV_SCOREBOARD, m->sb_fd);
    add(o, "%s=%d", AS_ENV_CHANNEL, chan);
    add(o, "%s=%s", AS_ENV_LISTEN_FDS, fds);
    add(o, "%s=%d", AS_ENV_LOG_FD, stdio_log_fd());
    if (w) {
        add(o, "%s=%d", AS_ENV_WORKER_ID, w->id);
        add(o, "%s=%d", AS_ENV_SLOT, worker_slot(w));
        add(o, "%s=%ld", AS_ENV_MAX_REQUESTS, max_requests(m));
        add(o, "%s=%d", AS_ENV_DUMP_FD, dump);
    } else {
        add(o, "%s=1", AS_ENV_TEMPLATE);
    }
    for (int i = 0; i < o->n; i++)
        if (!o->v[i]) {
            own_free(o);
            return false;
        }
    return true;
}

/* The parent's environment minus private_var(), plus OWN; NULL when out of
 * memory. Only the array is ours to free: the strings are environ's and
 * OWN's. */
static char **build_env(const struct own_env *own)
{
    size_t n = 0, k = 0;
    char **env;

    for (char **e = environ; *e; e++)
        n++;
    env = calloc(n + (size_t)own->n + 1, sizeof *env);
    if (!env)
        return NULL;
    for (char **e = environ; *e; e++)
        if (!private_var(*e))
            env[k++] = *e;
    for (int i = 0; i < own->n; i++)
        env[k++] = own->v[i];
    return env;
}

static void child_fail(int chan, const char *what)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%sappstackd: cannot start worker: %s: %s", AS_MSG_FAILED, what, strerror(errno));

    if (send(chan, msg, (size_t)n, MSG_NOSIGNAL) < 0)
        dprintf(STDERR_FILENO, "appstackd: %s\n", msg + strlen(AS_MSG_FAILED));
    _exit(127);
}

static bool keep_fd(int fd)
{
    return fcntl(fd, F_SETFD, 0) == 0;
}

/* In the child: die with the master, default signals, only our fds, drop
 * privileges, exec. The stack dump signal stays blocked until the worker
 * can answer it (its default action would kill it). */
static void child_exec(const struct master *m, int chan, int dump, const struct stdio_pipes *stdio, pid_t parent,
                       char **env)
{
    char *argv[] = { m->worker_path, (char *)"-c", m->config_path, NULL };
    sigset_t mask;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(chan, "PR_SET_PDEATHSIG");
    if (getppid() != parent)
        _exit(1);   /* the master died before prctl: nobody would watch us */
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    sigemptyset(&mask);
    sigaddset(&mask, AS_SIG_DUMP);
    if (sigprocmask(SIG_SETMASK, &mask, NULL) < 0)
        child_fail(chan, "sigprocmask");
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        child_fail(chan, "close_range");
    for (int i = 0; i < m->n_listen; i++)
        if (!keep_fd(m->listen_fd[i]))
            child_fail(chan, "fcntl");
    if (!keep_fd(m->sb_fd) || !keep_fd(chan) || (dump >= 0 && !keep_fd(dump)))
        child_fail(chan, "fcntl");
    if (!stdio_child(stdio))
        child_fail(chan, "stdout/stderr");
    if (m->gid != (gid_t)-1 && (setgroups((size_t)m->n_groups, m->groups) < 0 || setgid(m->gid) < 0))
        child_fail(chan, "setgid");
    if (m->uid != (uid_t)-1 && setuid(m->uid) < 0)
        child_fail(chan, "setuid");
    execve(m->worker_path, argv, env);
    child_fail(chan, m->worker_path);
}

/* The dump pipe: the worker writes, appstackd reads without blocking. */
static bool dump_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0) {
        as_err("cannot start a worker: pipe: %s", strerror(errno));
        return false;
    }
    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0) {
        as_err("cannot start a worker: fcntl: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    return true;
}

static void close_pair(int fds[2])
{
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    fds[0] = fds[1] = -1;
}

/* Fork + exec of W (a template when NULL; then no dump pipe). */
static pid_t start(struct master *m, const struct worker *w, unsigned generation, int *chan, int *dump)
{
    int sv[2] = { -1, -1 }, dp[2] = { -1, -1 };
    struct stdio_pipes stdio;
    struct own_env own = { .n = 0 };
    char **env = NULL;
    pid_t pid = -1, parent = getpid();

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        as_err("cannot start a worker: socketpair: %s", strerror(errno));
        return -1;
    }
    if (w && !dump_pipe(dp))
        goto out;
    if (!stdio_pipes_open(&stdio))
        goto out;
    if (!own_vars(m, w, generation, sv[1], dp[1], &own) || !(env = build_env(&own))) {
        as_err("cannot start a worker: out of memory");
        stdio_pipes_close(&stdio);
        goto out;
    }
    pid = fork();
    if (pid == 0)
        child_exec(m, sv[1], dp[1], &stdio, parent, env);
    if (pid < 0) {
        as_err("cannot start a worker: fork: %s", strerror(errno));
        stdio_pipes_close(&stdio);
        goto out;
    }
    stdio_watch(m->loop, &stdio, m->cfg.stderr_level, w ? w->id : 0, generation, (int)pid,
                w ? &m->sb->slot[worker_slot(w)] : NULL);
    *chan = sv[0];
    sv[0] = -1;
    if (w) {
        *dump = dp[0];
        dp[0] = -1;
    }
out:
    free(env);
    own_free(&own);
    close_pair(sv);
    close_pair(dp);
    return pid;
}

pid_t spawn_process(struct master *m, const struct worker *w, unsigned generation, int *chan, int *dump)
{
    return start(m, w, generation, chan, dump);
}

pid_t spawn_template(struct master *m, unsigned generation, int *chan)
{
    static bool subreaper;

    /* Workers forked by a template are adopted by appstackd once the
     * process between them exits (worker/template.c). */
    if (!subreaper) {
        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
            as_err("cannot start a template: PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
            return -1;
        }
        subreaper = true;
    }
    return start(m, NULL, generation, chan, NULL);
}

/* The FORK message (scoreboard.h) with the worker's ends of its channel,
 * dump pipe, stdout and stderr. */
static bool send_fork(int tmpl_chan, const struct worker *w, long max_req, const int fds[AS_FORK_FDS])
{
    char text[96];
    union {
        char b[CMSG_SPACE(sizeof(int) * AS_FORK_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { text, 0 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    struct cmsghdr *c;

    iov.iov_len = (size_t)snprintf(text, sizeof text, "%s%d %d %ld", AS_MSG_FORK, w->id, worker_slot(w), max_req);
    memset(&ctl, 0, sizeof ctl);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * AS_FORK_FDS);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * AS_FORK_FDS);
    /* Never wait for a template that does not read: its worker's start
     * fails instead. */
    if (sendmsg(tmpl_chan, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        as_err("cannot ask the template for worker %d: %s", w->id, strerror(errno));
        return false;
    }
    return true;
}

bool spawn_fork(struct master *m, const struct worker *w, int tmpl_chan, unsigned generation, int *chan, int *dump)
{
    int sv[2] = { -1, -1 }, dp[2] = { -1, -1 };
    struct stdio_pipes stdio;
    bool ok = false;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        as_err("cannot start a worker: socketpair: %s", strerror(errno));
        return false;
    }
    if (!dump_pipe(dp) || !stdio_pipes_open(&stdio))
        goto out;
    if (!send_fork(tmpl_chan, w, max_requests(m), (int[AS_FORK_FDS]){ sv[1], dp[1], stdio.out[1], stdio.err[1] })) {
        stdio_pipes_close(&stdio);
        goto out;
    }
    /* The template has its copies now: ours would hide the end of a
     * worker that never comes (its channel would never close). */
    stdio_watch(m->loop, &stdio, m->cfg.stderr_level, w->id, generation, 0, &m->sb->slot[worker_slot(w)]);
    *chan = sv[0];
    *dump = dp[0];
    sv[0] = dp[0] = -1;
    ok = true;
out:
    close_pair(sv);
    close_pair(dp);
    return ok;
}
