/* The Python stack of every thread, on demand: appstackd sends AS_SIG_DUMP
 * (common/scoreboard.h) and reads the dump from the pipe it gave us, ended
 * by a NUL byte. The handler is CPython's own faulthandler dumper: it reads
 * the interpreter's thread states without taking the GIL, so a worker whose
 * thread holds the GIL in a C call, or that deadlocked, still answers.
 * Standalone, the dump goes to stderr (kill -s RTMIN+2 PID). */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* faulthandler's dumper, exported by libpython (same signature 3.9-3.13);
 * not in the public headers. Async-signal-safe: write(2) only. */
extern const char *_Py_DumpTracebackThreads(int fd, PyInterpreterState *interp, PyThreadState *current);

static int dump_fd = STDERR_FILENO;
static bool to_master;

static void put(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = write(dump_fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static void on_dump(int sig)
{
    int saved = errno;
    const char *err;

    (void)sig;
    err = _Py_DumpTracebackThreads(dump_fd, NULL, NULL);
    if (err) {
        put(err, strlen(err));
        put("\n", 1);
    }
    if (to_master)
        put("", 1);     /* the NUL that ends one dump */
    errno = saved;
}

/* After Python has started, before the app is imported (an import that
 * hangs can be dumped too). appstackd blocks AS_SIG_DUMP until here: a
 * dump asked for earlier waits instead of killing us. */
bool wk_dump_init(void)
{
    const char *env = getenv(AS_ENV_DUMP_FD);
    struct sigaction sa;
    sigset_t set;
    long fd;

    if (env) {
        if (!as_parse_long(env, 0, 1 << 20, &fd) || fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
            as_err("%s: bad dump descriptor \"%s\"", AS_ENV_DUMP_FD, env);
            return false;
        }
        dump_fd = (int)fd;
        to_master = true;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_dump;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&set);
    sigaddset(&set, AS_SIG_DUMP);
    if (sigaction(AS_SIG_DUMP, &sa, NULL) < 0 || sigprocmask(SIG_UNBLOCK, &set, NULL) < 0) {
        as_err("cannot set up stack dumps: %s", strerror(errno));
        return false;
    }
    return true;
}

/* A worker forked from the template: its own pipe from now on (the signal
 * is blocked while this changes). */
void wk_dump_set_fd(int fd)
{
    dump_fd = fd;
    to_master = true;
}
