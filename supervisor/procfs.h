/* What /proc tells appstackd about a worker process. */
#ifndef APPSTACK_SUP_PROCFS_H
#define APPSTACK_SUP_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Resident set size in bytes (statm: shared pages included), -1 unknown. */
long long proc_rss(pid_t pid);
/* Resident memory and CPU time from one read of /proc/PID/stat. */
struct proc_sample {
    long long rss;      /* bytes resident */
    double cpu;         /* s of user + system time so far */
};
/* False when the process is gone or /proc cannot be read. */
bool proc_sample(pid_t pid, struct proc_sample *out);
/* "process state T (stopped), waiting in do_signal_stop" into BUF. */
void proc_describe(pid_t pid, char *buf, size_t n);

#endif
