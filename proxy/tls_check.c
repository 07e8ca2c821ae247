/* The master's check of the certificate pairs, in a short-lived child.
 *
 * The master serves no connection, so it never loads a certificate: the
 * pages OpenSSL touches to parse one (its code, error strings, providers,
 * the contexts) would stay resident in it for its whole life, half of its
 * memory. A child forked for the purpose loads the pairs exactly as a
 * serving process does (runtime_load_tls), prints the same FILE:LINE:
 * message lines on the stderr it shares with the master, so they come
 * before the master's verdict, and its exit status is the verdict. The
 * serving processes, forked later, load the pairs again for themselves. */
#include "proxy.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

bool tls_check_aside(struct runtime *rt)
{
    pid_t pid;
    int st;

    if (!runtime_wants_tls(rt))
        return true;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        as_err("checking the certificates: fork: %s", strerror(errno));
        return false;
    }
    if (pid == 0) {
        bool ok = runtime_load_tls(rt);
        as_log_flush();
        fflush(stderr);
        _exit(ok ? 0 : 1);      /* nothing of the master's to clean up */
    }
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            as_err("checking the certificates: waitpid: %s", strerror(errno));
            return false;
        }
    }
    if (WIFSIGNALED(st))
        as_err("checking the certificates: the check was killed by signal %d (%s)", WTERMSIG(st),
               strsignal(WTERMSIG(st)));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}
