/* One logging path for every program: journald's native protocol when our
 * stderr is a journal stream (so fields stay queryable and a traceback stays
 * one entry), plain lines on stderr otherwise. */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <sys/un.h>
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
    int fd;                     /* stderr, or what as_log_set_fd() named */
    enum as_log_format format;
} lg = { .ident = "appstack", .fd = STDERR_FILENO };

static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(lg.fd, &st) < 0)
        return false;
    return st.st_dev == dev && st.st_ino == ino;
}

void as_log_init(const char *ident)
{
    snprintf(lg.ident, sizeof lg.ident, "%s", ident);
    snprintf(lg.ident_field, sizeof lg.ident_field, "SYSLOG_IDENTIFIER=%s", ident);
    lg.journal = stderr_is_journal();
}

void as_log_set_fd(int fd)
{
    lg.fd = fd;
    lg.journal = stderr_is_journal();
}

int as_log_level_parse(const char *name)
{
    static const char *const names[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };

    if (name[0] >= '0' && name[0] <= '7' && name[1] == '\0')
        return name[0] - '0';
    if (!strcmp(name, "error"))
        return LOG_ERR;
    if (!strcmp(name, "warn"))
        return LOG_WARNING;
    for (int i = 0; i < 8; i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}

void as_log_add_global_field(const char *field)
{
    if (lg.n_global < MAX_GLOBAL) {
        char *copy = strdup(field);
        if (copy)
            lg.global[lg.n_global++] = copy;
    }
}

void as_log_clear_global_fields(void)
{
    while (lg.n_global > 0)
        free(lg.global[--lg.n_global]);
}

/* Per thread: a worker's request threads each serve a request of their own. */
static __thread char log_request[96];

void as_log_set_request_field(const char *field)
{
    snprintf(log_request, sizeof log_request, "%s", field ? field : "");
}

int as_log_to_journal(void)
{
    return lg.journal;
}

void as_log_set_format(enum as_log_format format)
{
    lg.format = format;
}

enum as_log_format as_log_format(void)
{
    return lg.format;
}

/* Length of the valid UTF-8 sequence at S (N bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t need;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return need;
}

bool as_json_str(char *out, size_t cap, size_t *len, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t o = *len;

    if (o + 2 > cap)
        return false;
    out[o++] = '"';
    for (size_t i = 0; i < n; ) {
        size_t k = utf8_len(s + i, n - i);
        char esc[8];
        const char *add = esc;
        size_t alen;

        if (k == 0) {
            add = "\\ufffd";          /* not UTF-8: replaced, so that the line stays JSON */
            alen = 6;
            k = 1;
        } else if (s[i] == '"' || s[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)s[i];
            alen = 2;
        } else if (s[i] == '\n') {
            add = "\\n";
            alen = 2;
        } else if (s[i] == '\t') {
            add = "\\t";
            alen = 2;
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            alen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", s[i]);
        } else {
            add = (const char *)s + i;
            alen = k;
        }
        if (o + alen + 1 > cap)
            return false;
        memcpy(out + o, add, alen);
        o += alen;
        i += k;
    }
    out[o++] = '"';
    *len = o;
    return true;
}

/* ,"NAME":"VALUE" */
static bool json_kv(char *out, size_t cap, size_t *len, const char *name, size_t nlen, const char *v, size_t vlen)
{
    size_t o = *len;

    if (o + 1 > cap)
        return false;
    out[o++] = ',';
    if (!as_json_str(out, cap, &o, name, nlen) || o + 1 > cap)
        return false;
    out[o++] = ':';
    if (!as_json_str(out, cap, &o, v, vlen))
        return false;
    *len = o;
    return true;
}

/* A journal field "NAME=value" as ,"NAME":"value". */
static bool json_field(char *out, size_t cap, size_t *len, const char *field)
{
    const char *eq = strchr(field, '=');

    if (!eq)
        return true;            /* not a field: nothing to say */
    return json_kv(out, cap, len, field, (size_t)(eq - field), eq + 1, strlen(eq + 1));
}

/* The entry as one JSON object into OUT; false when CAP is too small. */
static bool json_entry(char *out, size_t cap, size_t *len, int priority, const char *ident, int self, int pid,
                       const char *message, size_t mlen, bool globals, const char *const *fields, int n)
{
    struct timespec ts;
    char head[128], num[24];
    size_t o;
    int hl;

    clock_gettime(CLOCK_REALTIME, &ts);
    hl = snprintf(head, sizeof head, "{\"__REALTIME_TIMESTAMP\":\"%llu\",\"PRIORITY\":\"%d\",\"_PID\":\"%d\"",
                  (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000, priority & 7,
                  self);
    if (hl < 0 || (size_t)hl >= cap)
        return false;
    memcpy(out, head, (size_t)hl);
    o = (size_t)hl;
    if (!json_kv(out, cap, &o, "SYSLOG_IDENTIFIER", 17, ident, strlen(ident)))
        return false;
    if (pid != self) {
        snprintf(num, sizeof num, "%d", pid);
        if (!json_kv(out, cap, &o, "SYSLOG_PID", 10, num, strlen(num)))
            return false;
    }
    for (int i = 0; globals && i < lg.n_global; i++)
        if (!json_field(out, cap, &o, lg.global[i]))
            return false;
    if (globals && log_request[0] && !json_field(out, cap, &o, log_request))
        return false;
    for (int i = 0; i < n && i < MAX_FIELDS; i++)
        if (!json_field(out, cap, &o, fields[i]))
            return false;
    if (!json_kv(out, cap, &o, "MESSAGE", 7, message, mlen) || o + 2 > cap)
        return false;
    out[o++] = '}';
    out[o++] = '\n';
    *len = o;
    return true;
}

/* One JSON object per entry, written at once so that the lines of
 * concurrent processes do not interleave. IDENT and PID are the entry's
 * origin; GLOBALS: our global fields belong to it. */
static void to_json(int priority, const char *ident, int pid, const char *message, size_t len, bool globals,
                    const char *const *fields, int n)
{
    char stack[8192], *buf = stack;
    size_t o = 0, cap = sizeof stack;
    int saved = errno, self = (int)getpid();

    if (!json_entry(buf, cap, &o, priority, ident, self, pid, message, len, globals, fields, n)) {
        cap = 6 * len + (64u << 10);    /* an escape is at most 6 bytes per byte */
        buf = malloc(cap);
        if (!buf || !json_entry(buf, cap, &o, priority, ident, self, pid, message, len, globals, fields, n))
            o = 0;
    }
    for (size_t off = 0; off < o; ) {
        ssize_t w = write(lg.fd, buf + off, o - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;              /* nowhere to log */
        off += (size_t)w;
    }
    if (buf != stack)
        free(buf);
    errno = saved;
}

bool as_log_json(char *out, size_t cap, size_t *len, int priority, const char *message, size_t mlen,
                 const char *const *fields, int n)
{
    int self = (int)getpid();   /* not cached: the proxy forks its serving processes */

    return json_entry(out, cap, len, priority, lg.ident, self, self, message, mlen, true, fields, n);
}

static void to_stderr_as(int priority, const char *ident, int pid, const char *message, size_t len)
{
    static const char *const names[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
    int saved = errno;

    /* One write so that lines of concurrent processes do not interleave. */
    dprintf(lg.fd, "%s[%d]: %s%s%.*s\n", ident, pid, priority <= LOG_WARNING ? names[priority & 7] : "",
            priority <= LOG_WARNING ? ": " : "", (int)len, message);
    errno = saved;
}

static void to_stderr(int priority, const char *message)
{
    to_stderr_as(priority, lg.ident, (int)getpid(), message, strlen(message));
}

/* sd_journal_sendv() blocks as long as journald is not reading, and a
 * stalled journal must never stall a worker. So entries go out here on a
 * non-blocking socket connected to journald (connected, so that poll()
 * tells when journald has room again: its queue is only
 * net.unix.max_dgram_qlen datagrams long, 10 on a host without systemd).
 * A busy journald is waited for briefly; a stalled one is not: entries then
 * wait in a bounded queue, sent before the next entry and by
 * as_log_flush(), and beyond that they are counted and reported as dropped
 * once the journal reads again. */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define QUEUE_MAX (4u << 20)
#define BUSY_WAIT_MS 20         /* longer than this and journald is stalled */

static struct {
    int fd;
    char *q;                    /* [uint32 length][datagram]... */
    size_t qlen;
    unsigned long dropped;
} jq = { .fd = -1 };

static int journal_fd(void)
{
    static const struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
    int big = 8 << 20;

    if (jq.fd >= 0)
        return jq.fd;
    jq.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (jq.fd < 0)
        return -1;
    if (connect(jq.fd, (const struct sockaddr *)&sa, sizeof sa) < 0) {
        close(jq.fd);
        return jq.fd = -1;
    }
    /* Best effort: a smaller buffer only means waiting or queueing sooner. */
    (void)setsockopt(jq.fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    return jq.fd;
}

/* 0 sent, 1 journal busy, -errno otherwise. Waits up to WAIT_MS for room. */
static int send_datagram(const char *data, size_t len, int wait_ms)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = journal_fd();

        if (fd < 0)
            return -errno;
        if (send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
            return 0;
        if (errno == EAGAIN || errno == ENOBUFS) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };

            if (wait_ms > 0 && poll(&p, 1, wait_ms) == 1 &&
                send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
                return 0;
            return 1;
        }
        if (errno != ECONNREFUSED && errno != ENOTCONN)
            return -errno;
        close(fd);              /* journald restarted: its socket is new */
        jq.fd = -1;
    }
    return -ECONNREFUSED;
}

/* Native protocol: NAME=value, or NAME, a little-endian 64-bit length and
 * the raw value when the value has a newline. Returns the size needed. */
static size_t serialize(const struct iovec *iov, int n, char *out, size_t cap)
{
    size_t len = 0;

    for (int i = 0; i < n; i++) {
        const char *f = iov[i].iov_base, *eq = memchr(f, '=', iov[i].iov_len);
        size_t flen = iov[i].iov_len;

        /* A NUL (from a worker's raw output) needs the binary form too. */
        if (eq && (memchr(eq, '\n', flen - (size_t)(eq - f)) || memchr(eq, '\0', flen - (size_t)(eq - f)))) {
            size_t name = (size_t)(eq - f), vlen = flen - name - 1;
            uint64_t le = htole64(vlen);

            if (len + name + 1 + 8 + vlen + 1 <= cap) {
                memcpy(out + len, f, name);
                out[len + name] = '\n';
                memcpy(out + len + name + 1, &le, 8);
                memcpy(out + len + name + 9, eq + 1, vlen);
                out[len + name + 9 + vlen] = '\n';
            }
            len += name + 1 + 8 + vlen + 1;
        } else {
            if (len + flen + 1 <= cap) {
                memcpy(out + len, f, flen);
                out[len + flen] = '\n';
            }
            len += flen + 1;
        }
    }
    return len;
}

static bool enqueue(const char *data, size_t len)
{
    uint32_t n = (uint32_t)len;

    if (!jq.q && !(jq.q = malloc(QUEUE_MAX)))
        return false;
    if (jq.qlen + sizeof n + len > QUEUE_MAX)
        return false;
    memcpy(jq.q + jq.qlen, &n, sizeof n);
    memcpy(jq.q + jq.qlen + sizeof n, data, len);
    jq.qlen += sizeof n + len;
    return true;
}

static void note_dropped(void);

/* Sends what waits, in order, giving a draining journald a moment now and
 * then. True once the queue is empty. */
static bool flush_queue(void)
{
    size_t off = 0;

    while (off < jq.qlen) {
        uint32_t n;

        memcpy(&n, jq.q + off, sizeof n);
        if (send_datagram(jq.q + off + sizeof n, n, 1) == 1)
            break;
        off += sizeof n + n;    /* sent, or undeliverable: do not retry forever */
    }
    memmove(jq.q, jq.q + off, jq.qlen - off);
    jq.qlen -= off;
    if (jq.qlen == 0 && jq.dropped)
        note_dropped();
    return jq.qlen == 0;
}

/* 0 delivered or queued, -1 the journal cannot take it (caller falls back). */
static int journal_send(const struct iovec *iov, int n)
{
    char stack[8192], *buf = stack;
    size_t len = serialize(iov, n, stack, sizeof stack);
    int r = 0;

    if (len > sizeof stack) {
        if (!(buf = malloc(len)))
            return -1;
        serialize(iov, n, buf, len);
    }
    if (jq.qlen == 0 || flush_queue()) {
        int k = send_datagram(buf, len, BUSY_WAIT_MS);

        if (k == -EMSGSIZE)     /* huge: sd-journal passes those in a memfd */
            r = sd_journal_sendv(iov, n) < 0 ? -1 : 0;
        else if (k < 0)
            r = -1;
        else if (k == 1 && !enqueue(buf, len))
            jq.dropped++;
    } else if (!enqueue(buf, len)) {
        jq.dropped++;
    }
    if (buf != stack)
        free(buf);
    return r;
}

static void note_dropped(void)
{
    char msg[128], prio[] = "PRIORITY=4";
    struct iovec iov[3];

    snprintf(msg, sizeof msg, "MESSAGE=%lu log messages dropped: the journal was not reading", jq.dropped);
    jq.dropped = 0;
    iov[0] = (struct iovec){ msg, strlen(msg) };
    iov[1] = (struct iovec){ prio, strlen(prio) };
    iov[2] = (struct iovec){ lg.ident_field, strlen(lg.ident_field) };
    journal_send(iov, 3);
}

void as_log_flush(void)
{
    if (jq.qlen)
        flush_queue();
}

void as_log_fields(int priority, const char *message, const char *const *fields, int n)
{
    struct iovec iov[MAX_FIELDS + MAX_GLOBAL + 4];
    char prio[16], *msg;
    int k = 0, saved = errno;

    if (!lg.journal) {
        if (lg.format == AS_LOG_JSON)
            to_json(priority, lg.ident, (int)getpid(), message, strlen(message), true, fields, n);
        else
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
    if (log_request[0])
        iov[k++] = (struct iovec){ log_request, strlen(log_request) };
    for (int i = 0; i < n && i < MAX_FIELDS; i++)
        iov[k++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
    if (journal_send(iov, k) < 0)
        to_stderr(priority, message);
    free(msg);
    errno = saved;
}

void as_log_relay(int priority, const char *ident, int pid, const char *message, size_t len,
                  const char *const *fields, int n)
{
    struct iovec iov[MAX_FIELDS + 4];
    char prio[16], idf[96], pidf[32], *msg;
    int k = 0, saved = errno;

    if (!lg.journal && lg.format == AS_LOG_JSON) {
        to_json(priority, ident, pid, message, len, false, fields, n);
        return;
    }
    if (!lg.journal || !(msg = malloc(len + 8))) {
        to_stderr_as(priority, ident, pid, message, len);
        return;
    }
    memcpy(msg, "MESSAGE=", 8);
    memcpy(msg + 8, message, len);
    snprintf(prio, sizeof prio, "PRIORITY=%d", priority & 7);
    snprintf(idf, sizeof idf, "SYSLOG_IDENTIFIER=%s", ident);
    snprintf(pidf, sizeof pidf, "SYSLOG_PID=%d", pid);
    iov[k++] = (struct iovec){ msg, len + 8 };
    iov[k++] = (struct iovec){ prio, strlen(prio) };
    iov[k++] = (struct iovec){ idf, strlen(idf) };
    iov[k++] = (struct iovec){ pidf, strlen(pidf) };
    for (int i = 0; i < n && i < MAX_FIELDS; i++)
        iov[k++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
    if (journal_send(iov, k) < 0)
        to_stderr_as(priority, ident, pid, message, len);
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
