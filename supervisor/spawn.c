/* Starting one worker: fork + exec of appstack-worker with the environment
 * of the contract in scoreboard.h. Everything that allocates happens in the
 * parent before fork, so the child only makes plain syscalls. */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "stdio_capture.h"

extern char **environ;

#define N_OWN_ENV 9

/* Variables that belong to appstackd alone: a worker must not answer
 * systemd in the master's name nor look for systemd's sockets. */
static bool private_var(const char *v)
{
    static const char *const names[] = {
        "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "LISTEN_FDS=",
        "LISTEN_PID=", "LISTEN_FDNAMES=", "APPSTACK_WORKER_ID=", "APPSTACK_GENERATION=",
        "APPSTACK_SLOT=", "APPSTACK_SCOREBOARD_FD=", "APPSTACK_CHANNEL_FD=",
        "APPSTACK_LISTEN_FDS=", "APPSTACK_MAX_REQUESTS=", "APPSTACK_LOG_FD=", "APPSTACK_DUMP_FD=", NULL
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

/* The parent's environment minus private_var(), plus our own variables. */
static char **build_env(const struct master *m, const struct worker *w, unsigned generation, int chan, int dump)
{
    size_t n = 0, k = 0;
    char **env, fds[SUP_MAX_LISTEN * 12] = "";
    int ok = 0;

    for (char **e = environ; *e; e++)
        n++;
    env = calloc(n + N_OWN_ENV + 1, sizeof *env);
    if (!env)
        return NULL;
    for (char **e = environ; *e; e++)
        if (!private_var(*e))
            env[k++] = *e;
    for (int i = 0; i < m->n_listen; i++)
        snprintf(fds + strlen(fds), sizeof fds - strlen(fds), "%s%d", i ? "," : "", m->listen_fd[i]);
    ok += asprintf(&env[k++], "%s=%d", AS_ENV_WORKER_ID, w->id) >= 0;
    ok += asprintf(&env[k++], "%s=%u", AS_ENV_GENERATION, generation) >= 0;
    ok += asprintf(&env[k++], "%s=%d", AS_ENV_SLOT, worker_slot(w)) >= 0;
    ok += asprintf(&env[k++], "%s=%d", AS_ENV_SCOREBOARD, m->sb_fd) >= 0;
    ok += asprintf(&env[k++], "%s=%d", AS_ENV_CHANNEL, chan) >= 0;
    ok += asprintf(&env[k++], "%s=%s", AS_ENV_LISTEN_FDS, fds) >= 0;
    ok += asprintf(&env[k++], "%s=%ld", AS_ENV_MAX_REQUESTS, max_requests(m)) >= 0;
    ok += asprintf(&env[k++], "%s=%d", AS_ENV_LOG_FD, stdio_log_fd()) >= 0;
    ok += asprintf(&env[k++], "%s=%d", AS_ENV_DUMP_FD, dump) >= 0;
    if (ok != N_OWN_ENV) {
        free(env);  /* leaks the few strings made: out of memory anyway */
        return NULL;
    }
    return env;
}

static void free_env(char **env)
{
    size_t n = 0;

    while (env[n])
        n++;
    for (size_t i = n - N_OWN_ENV; i < n; i++)
        free(env[i]);
    free(env);
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
    if (!keep_fd(m->sb_fd) || !keep_fd(chan) || !keep_fd(dump))
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

pid_t spawn_process(struct master *m, const struct worker *w, unsigned generation, int *chan, int *dump)
{
    int sv[2], dp[2];
    struct stdio_pipes stdio;
    char **env;
    pid_t pid, parent = getpid();

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        as_err("cannot start a worker: socketpair: %s", strerror(errno));
        return -1;
    }
    if (!dump_pipe(dp)) {
        pid = -1;
        goto out_chan;
    }
    if (!stdio_pipes_open(&stdio)) {
        pid = -1;
        goto out_dump;
    }
    env = build_env(m, w, generation, sv[1], dp[1]);
    if (!env) {
        as_err("cannot start a worker: out of memory");
        pid = -1;
        goto out;
    }
    pid = fork();
    if (pid == 0)
        child_exec(m, sv[1], dp[1], &stdio, parent, env);
    free_env(env);
    if (pid < 0) {
        as_err("cannot start a worker: fork: %s", strerror(errno));
        goto out;
    }
    stdio_watch(m->loop, &stdio, m->cfg.stderr_level, w->id, generation, (int)pid);
    close(sv[1]);
    close(dp[1]);
    *chan = sv[0];
    *dump = dp[0];
    return pid;
out:
    stdio_pipes_close(&stdio);
out_dump:
    close(dp[0]);
    close(dp[1]);
out_chan:
    close(sv[0]);
    close(sv[1]);
    return -1;
}
