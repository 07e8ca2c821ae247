/* Wait statuses (exits.h). */
#include "exits.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

void exit_describe(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, n, "ended with wait status %d", status);
}

bool exit_by_itself(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status) != 0;
    if (!WIFSIGNALED(status))
        return false;
    switch (WTERMSIG(status)) {
    case SIGSEGV: case SIGABRT: case SIGBUS: case SIGFPE: case SIGILL:
        return true;
    default:
        return false;
    }
}
