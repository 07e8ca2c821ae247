/* The template of a generation ([app] preload = on): a process that
 * imports the app once, like a worker, and then forks the generation's
 * workers when appstackd asks (common/scoreboard.h), so that they share the
 * loaded app's memory and start in milliseconds. It never serves.
 *
 * Each worker is forked twice: the template forks a short-lived child that
 * forks the worker and exits at once, so that appstackd (a child
 * subreaper) adopts the worker: appstackd reaps it and its
 * PR_SET_PDEATHSIG is about appstackd, as for a worker it started itself.
 *
 * What forking a loaded interpreter breaks is dealt with here:
 *  - CPython's fork protocol (PyOS_BeforeFork / PyOS_AfterFork_Child) runs,
 *    and with it every os.register_at_fork hook: `random` re-seeds,
 *    `logging` re-creates the locks another thread may hold at the fork,
 *    `threading` forgets the threads the child does not have; apps restart
 *    their own threads there too;
 *  - Django's first-request set-up is done here once, before the first
 *    fork (warm.c), so that each worker's first request need not;
 *  - the collector is off while the app imports and gc.freeze() runs before
 *    each fork, so a worker's collections never write to the objects it
 *    inherited and their pages stay shared;
 *  - Django's database connections opened at import are closed before the
 *    fork: each worker opens its own (a socket or SQLite handle used by
 *    several processes at once corrupts the conversation);
 *  - descriptors: the worker gets its own channel, dump pipe, stdout and
 *    stderr and keeps none of the template's or other workers' (the ones
 *    the master sends are close-on-exec and closed here after the fork);
 *    Python's buffered output is flushed first, so nothing is written
 *    twice. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum { FD_CHAN, FD_DUMP, FD_OUT, FD_ERR };

struct fork_req {
    int id, slot;
    long max_requests;
    int fd[AS_FORK_FDS];
};

/* The Python side: returns (before_fork, after_fork_in_child, threads). */
static const char helpers[] =
    "def install(gc, sys, threading):\n"
    "    enabled = gc.isenabled()\n"
    "    gc.disable()\n"
    "    def before_fork():\n"
    "        try:\n"
    "            db = sys.modules.get('django.db')\n"
    "            if db is not None:\n"
    "                db.connections.close_all()\n"
    "        finally:\n"
    "            gc.freeze()\n"
    "    def after_fork():\n"
    "        if enabled:\n"
    "            gc.enable()\n"
    "    def threads():\n"
    "        main = threading.main_thread()\n"
    "        return ', '.join(t.name for t in threading.enumerate() if t is not main)\n"
    "    return before_fork, after_fork, threads\n";

static PyObject *before_fork_fn, *after_fork_fn, *threads_fn;

/* Before the app is imported: the collector stops (see above). */
bool wk_template_prepare(void)
{
    PyObject *fn = wk_python_define(helpers, "<appstack-worker: template>", "install");
    PyObject *gc = fn ? PyImport_ImportModule("gc") : NULL;
    PyObject *sys = gc ? PyImport_ImportModule("sys") : NULL;
    PyObject *threading = sys ? PyImport_ImportModule("threading") : NULL;
    PyObject *r = threading ? PyObject_CallFunctionObjArgs(fn, gc, sys, threading, NULL) : NULL;
    bool ok = r && PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 3;

    if (ok) {
        before_fork_fn = Py_NewRef(PyTuple_GET_ITEM(r, 0));
        after_fork_fn = Py_NewRef(PyTuple_GET_ITEM(r, 1));
        threads_fn = Py_NewRef(PyTuple_GET_ITEM(r, 2));
    } else {
        wk_log_exception("cannot set up the template");
    }
    Py_XDECREF(r);
    Py_XDECREF(threading);
    Py_XDECREF(sys);
    Py_XDECREF(gc);
    Py_XDECREF(fn);
    return ok;
}

static void call(PyObject *fn, const char *what)
{
    PyObject *r = PyObject_CallNoArgs(fn);

    if (r)
        Py_DECREF(r);
    else
        wk_log_exception(what);
}

/* Threads the app started at import run on in the template only: said
 * once, since a worker that needs them must restart them itself. */
static void tell_threads(void)
{
    PyObject *r = PyObject_CallNoArgs(threads_fn);
    const char *names = r ? PyUnicode_AsUTF8(r) : NULL;

    if (names && *names)
        as_warn("the app started threads while it was imported (%s): forked workers do not have them; an app "
                "that needs them in each worker starts them in os.register_at_fork(after_in_child=...) or on "
                "first use",
                names);
    if (!names)
        PyErr_Clear();
    Py_XDECREF(r);
}

static void on_term(int sig)
{
    int saved = errno;

    (void)sig;
    W.term = 1;     /* a worker forked just now inherits it and stops */
    if (W.sig_pipe[1] >= 0 && write(W.sig_pipe[1], "", 1) < 0) {
        /* full: the loop wakes up anyway */
    }
    errno = saved;
}

static void on_quit(int sig)
{
    (void)sig;
    _exit(0);
}

static bool set_signals(void)
{
    struct sigaction sa;

    if (pipe2(W.sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        as_err("pipe2: %s", strerror(errno));
        return false;
    }
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_term;
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        return false;
    sa.sa_handler = on_quit;
    if (sigaction(SIGQUIT, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        return false;
    signal(SIGPIPE, SIG_IGN);
    return true;
}

/* The template's end: no Python finalization (atexit handlers belong to
 * the workers that served, and an app thread would hold it up). */
static void __attribute__((noreturn)) leave(int rc)
{
    wk_stdio_flush();
    as_log_flush();
    _exit(rc);
}

static void close_req(struct fork_req *rq)
{
    for (int i = 0; i < AS_FORK_FDS; i++)
        if (rq->fd[i] >= 0)
            close(rq->fd[i]);
}

/* One FORK message: 1 when RQ holds one, 0 when there is none (or it was
 * not one: logged), -1 when appstackd closed the channel. */
static int receive(struct fork_req *rq)
{
    char buf[128];
    union {
        char b[CMSG_SPACE(sizeof(int) * AS_FORK_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { buf, sizeof buf - 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    int n_fds = 0, end = 0;
    ssize_t n = recvmsg(W.channel_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    buf[n] = '\0';
    for (int i = 0; i < AS_FORK_FDS; i++)
        rq->fd[i] = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        n_fds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(rq->fd, CMSG_DATA(c), sizeof(int) * (size_t)(n_fds < AS_FORK_FDS ? n_fds : AS_FORK_FDS));
    }
    if (n_fds != AS_FORK_FDS || (mh.msg_flags & MSG_CTRUNC) ||
        sscanf(buf, AS_MSG_FORK "%d %d %ld%n", &rq->id, &rq->slot, &rq->max_requests, &end) != 3 ||
        buf[end] != '\0' || rq->slot < 0 || rq->slot >= AS_SCOREBOARD_SLOTS) {
        as_err("unexpected message from appstackd (%zd bytes, %d descriptors): ignored", n, n_fds);
        close_req(rq);
        return 0;
    }
    return 1;
}

/* In the new worker, before any Python: wait to be adopted by appstackd,
 * then take this worker's descriptors and identity. */
static void become_worker(struct fork_req *rq)
{
    pid_t first = getppid();
    struct timespec pause = { 0, 20000 };
    char msg[32];

    for (int i = 0; getppid() != W.master_pid; i++) {
        if (getppid() != first || i >= 100000) {
            as_err("worker %d: appstackd (pid %d) did not adopt it: exiting", rq->id, (int)W.master_pid);
            _exit(1);
        }
        nanosleep(&pause, NULL);
    }
    /* Die with appstackd, as a worker it forks itself does. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != W.master_pid)
        _exit(1);
    close(W.channel_fd);
    close(W.sig_pipe[0]);
    close(W.sig_pipe[1]);
    W.sig_pipe[0] = W.sig_pipe[1] = -1;
    if (dup2(rq->fd[FD_OUT], STDOUT_FILENO) < 0 || dup2(rq->fd[FD_ERR], STDERR_FILENO) < 0) {
        as_err("worker %d: dup2: %s", rq->id, strerror(errno));
        _exit(1);
    }
    close(rq->fd[FD_OUT]);
    close(rq->fd[FD_ERR]);
    W.channel_fd = rq->fd[FD_CHAN];
    W.template = false;
    wk_dump_set_fd(rq->fd[FD_DUMP]);
    wk_master_bind(rq->id, rq->slot, (uint64_t)rq->max_requests);
    snprintf(msg, sizeof msg, "%s%d", AS_MSG_PID, (int)getpid());
    wk_master_send(msg, strlen(msg));
}

/* True in the new worker, false in the template. */
static bool fork_worker(struct fork_req *rq)
{
    sigset_t dump_sig, old;
    pid_t pid;
    int status, err;

    wk_stdio_flush();   /* what Python holds would be written by both */
    call(before_fork_fn, "before forking a worker (closing Django's database connections)");
    /* A dump asked for before the worker has its own pipe waits. */
    sigemptyset(&dump_sig);
    sigaddset(&dump_sig, AS_SIG_DUMP);
    pthread_sigmask(SIG_BLOCK, &dump_sig, &old);
    PyOS_BeforeFork();
    pid = fork();
    if (pid == 0) {
        pid_t worker = fork();
        if (worker != 0)
            _exit(worker < 0 ? (errno > 0 && errno < 256 ? errno : 1) : 0);
        become_worker(rq);
        PyOS_AfterFork_Child();
        call(after_fork_fn, "after the fork");
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return true;
    }
    err = errno;
    PyOS_AfterFork_Parent();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_req(rq);
    if (pid < 0) {
        as_err("cannot fork worker %d: %s", rq->id, strerror(err));
        return false;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return false;   /* ECHILD: the app ignores SIGCHLD, the kernel reaped it */
    }
    if (WIFEXITED(status) && WEXITSTATUS(status))
        as_err("cannot fork worker %d: %s", rq->id, strerror(WEXITSTATUS(status)));
    else if (!WIFEXITED(status))
        as_err("cannot fork worker %d: the process between us was killed", rq->id);
    return false;
}

/* Forks workers until told to stop; returns only in a new worker, which
 * goes on as any worker does (main.c). */
void wk_template_run(void)
{
    struct pollfd p[2];
    struct fork_req rq;
    char buf[64];
    int rc;

    if (!set_signals()) {
        as_err("cannot set up the template's signals: %s", strerror(errno));
        exit(1);
    }
    wk_template_warm();
    tell_threads();
    call(before_fork_fn, "preparing the template");
    wk_master_send(AS_MSG_READY, strlen(AS_MSG_READY));
    as_info("template ready: the app is loaded, workers fork from here");
    for (;;) {
        if (W.term)
            leave(0);
        p[0] = (struct pollfd){ .fd = W.channel_fd, .events = POLLIN };
        p[1] = (struct pollfd){ .fd = W.sig_pipe[0], .events = POLLIN };
        as_log_flush();
        Py_BEGIN_ALLOW_THREADS     /* the app's own threads run meanwhile */
        rc = poll(p, 2, -1);
        Py_END_ALLOW_THREADS
        if (rc < 0 && errno != EINTR) {
            as_err("poll: %s", strerror(errno));
            leave(1);
        }
        while (read(W.sig_pipe[0], buf, sizeof buf) > 0)
            ;
        while ((rc = receive(&rq)) == 1)
            if (fork_worker(&rq))
                return;
        if (rc < 0) {
            as_warn("appstackd's channel closed: exiting");
            leave(0);
        }
    }
}
