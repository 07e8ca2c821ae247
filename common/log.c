/* One logging path for every program: journald's native protocol when our
 * stderr is a journal stream (so fields stay queryable and a traceback stays
 * one entry), plain lines on stderr otherwise. */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#define MAX_GLOBAL 8
#define MAX_FIELDS 16

static struct {
    char ident[64];
    char ident_field[96];
    bool journal;
    char *global[MAX_GLOBAL];
    int n_global;
} lg = { .ident = "appstack" };

static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return st.st_dev == dev && st.st_ino == ino;
}

void as_log_init(const char *ident)
{
    snprintf(lg.ident, sizeof lg.ident, "%s", ident);
    snprintf(lg.ident_field, sizeof lg.ident_field, "SYSLOG_IDENTIFIER=%s", ident);
    lg.journal = stderr_is_journal();
}

void as_log_add_global_field(const char *field)
{
    if (lg.n_global < MAX_GLOBAL) {
        char *copy = strdup(field);
        if (copy)
            lg.global[lg.n_global++] = copy;
    }
}

int as_log_to_journal(void)
{
    return lg.journal;
}

static void to_stderr(int priority, const char *message)
{
    static const char *const names[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
    int saved = errno;

    /* One write so that lines of concurrent processes do not interleave. */
    dprintf(STDERR_FILENO, "%s[%d]: %s%s%s\n", lg.ident, (int)getpid(),
            priority <= LOG_WARNING ? names[priority & 7] : "", priority <= LOG_WARNING ? ": " : "", message);
    errno = saved;
}

void as_log_fields(int priority, const char *message, const char *const *fields, int n)
{
    struct iovec iov[MAX_FIELDS + MAX_GLOBAL + 3];
    char prio[16], *msg;
    int k = 0, saved = errno;

    if (!lg.journal) {
        to_stderr(priority, message);
        return;
    }
    if (asprintf(&msg, "MESSAGE=%s", message) < 0) {
        to_stderr(priority, message);
        return;
    }
    snprintf(prio, sizeof prio, "PRIORITY=%d", priority & 7);
    iov[k++] = (struct iovec){ msg, strlen(msg) };
    iov[k++] = (struct iovec){ prio, strlen(prio) };
    iov[k++] = (struct iovec){ lg.ident_field, strlen(lg.ident_field) };
    for (int i = 0; i < lg.n_global; i++)
        iov[k++] = (struct iovec){ lg.global[i], strlen(lg.global[i]) };
    for (int i = 0; i < n && i < MAX_FIELDS; i++)
        iov[k++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
    if (sd_journal_sendv(iov, k) < 0)
        to_stderr(priority, message);
    free(msg);
    errno = saved;
}

void as_vlog(int priority, const char *fmt, va_list ap)
{
    char buf[4096];

    vsnprintf(buf, sizeof buf, fmt, ap);
    as_log_fields(priority, buf, NULL, 0);
}

void as_log(int priority, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    as_vlog(priority, fmt, ap);
    va_end(ap);
}
