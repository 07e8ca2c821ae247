/* Reading /proc for a worker (procfs.h). */
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

/* /proc/PID/stat (proc(5)): the command name in parentheses may hold
 * spaces and parentheses itself, so the fields are counted from the last
 * ')'. utime and stime are fields 14 and 15 (clock ticks), rss field 24
 * (pages). */
bool proc_sample(pid_t pid, struct proc_sample *out)
{
    char path[64], buf[1024], *p;
    unsigned long long utime = 0, stime = 0;
    long long rss = 0;
    ssize_t n;
    int fd, field;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (!p)
        return false;
    /* p + 2 is field 3 (state) */
    for (field = 3, p += 2; *p && field <= 24; field++) {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (field == 14)
            utime = v;
        else if (field == 15)
            stime = v;
        else if (field == 24)
            rss = (long long)v;
        p = strchr(p, ' ');
        if (!p)
            break;
        p++;
    }
    if (field <= 24)
        return false;
    out->rss = rss * sysconf(_SC_PAGESIZE);
    out->cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    return true;
}
