/* What /proc tells appstackd about a worker process. */
#ifndef APPSTACK_SUP_PROCFS_H
#define APPSTACK_SUP_PROCFS_H

#include <stddef.h>
#include <sys/types.h>

/* Resident set size in bytes (statm: shared pages included), -1 unknown. */
long long proc_rss(pid_t pid);
/* "process state T (stopped), waiting in do_signal_stop" into BUF. */
void proc_describe(pid_t pid, char *buf, size_t n);

#endif
