/* What a child's wait status says, for workers and templates alike. */
#ifndef APPSTACK_SUP_EXITS_H
#define APPSTACK_SUP_EXITS_H

#include <stdbool.h>
#include <stddef.h>

/* "exited with status 1", "killed by SIGKILL". */
void exit_describe(int status, char *buf, size_t n);
/* Whether a death is the process's own failure (a non-zero exit, a crash
 * signal) rather than a kill from outside (an operator's kill -9, the OOM
 * killer, a stray SIGTERM), which says nothing about the app. */
bool exit_by_itself(int status);

#endif
