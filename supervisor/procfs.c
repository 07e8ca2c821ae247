/* Reading /proc for a worker (procfs.h). */
#include "procfs.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

long long proc_rss(pid_t pid)
{
    char path[64];
    long long size, resident;
    FILE *f;
    int n;

    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? resident * sysconf(_SC_PAGESIZE) : -1;
}

static const char *state_name(char state)
{
    switch (state) {
    case 'R': return "R (running)";
    case 'S': return "S (sleeping)";
    case 'D': return "D (uninterruptible sleep)";
    case 'T': return "T (stopped)";
    case 't': return "t (stopped by a debugger)";
    case 'Z': return "Z (zombie)";
    default: return "unknown";
    }
}

static void read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "re");

    buf[0] = '\0';
    if (!f)
        return;
    if (!fgets(buf, (int)n, f))
        buf[0] = '\0';
    fclose(f);
}

void proc_describe(pid_t pid, char *buf, size_t n)
{
    char path[64], stat[512], wchan[64], *p;
    bool waits;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    read_line(path, stat, sizeof stat);
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    read_line(path, wchan, sizeof wchan);
    p = strrchr(stat, ')');     /* "pid (comm) S ...": the state follows the name */
    waits = wchan[0] && strcmp(wchan, "0");
    snprintf(buf, n, "process state %s%s%s", state_name(p && p[1] == ' ' ? p[2] : '?'),
             waits ? ", waiting in " : "", waits ? wchan : "");
}
