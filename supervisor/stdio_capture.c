/* Workers' stdout and stderr. Each worker's fds 1 and 2 are the write ends
 * of two pipes that appstackd reads here and turns into log entries with
 * the worker's fields (APPSTACK_WORKER, APPSTACK_GENERATION, SYSLOG_PID),
 * stdout at info and stderr at [app] stderr_level unless a line says
 * otherwise (stdio_entry.h). So whatever writes there, Python's own
 * sys.stdout/sys.stderr, a C extension or a subprocess, is logged the same.
 *
 * The pipes are packet pipes (O_DIRECT): a read returns one write(2), so a
 * multi-line record written at once stays one entry. A stream lives until
 * its pipe's EOF, which may come after the worker's exit when a subprocess
 * still holds the pipe: it owns copies of the fields it needs and frees
 * itself. The worker's own messages do not come this way: it logs them on
 * the descriptor stdio_log_fd() gives it (the journal or our stderr).
 *
 * While the worker serves a request, what it writes is about that request:
 * its entries get APPSTACK_REQUEST_ID, from the worker's scoreboard slot
 * when the bytes are read (note_request). The worker does not end a
 * request while its pipes hold output (worker/master.c), so output read
 * while the slot shows a request is that request's (with request threads,
 * only while it shows one). */
#include "stdio_capture.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "request_id.h"
#include "scoreboard.h"
#include "stdio_entry.h"

#define PIPE_BYTES (256 * 1024)  /* a packet takes a page: 64 writes before the worker waits */
#define PACKETS_PER_TURN 64      /* then other workers and the control socket get a turn */
#define QUIET 0.5                /* s a held-back partial line or traceback waits for more (a
                                  * loaded machine may pause a worker between two writes) */

struct stdio_stream {
    struct ev_loop *loop;
    ev_io io;
    ev_timer quiet;
    struct stdio_entry entry;
    int pid;
    const struct as_slot *slot;         /* the worker's, for its request ID */
    char fields[3][48];
    char request[AS_REQUEST_ID_MAX + 24];   /* APPSTACK_REQUEST_ID=..., or "" */
    struct stdio_stream *prev, *next;
};

static struct stdio_stream *streams;
static int log_fd = -1;

bool stdio_init(void)
{
    /* A copy of our stderr above 2, handed to every worker: dup'ed once so
     * that the number is known before any fork. */
    log_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (log_fd < 0) {
        as_err("cannot duplicate stderr for the workers: %s", strerror(errno));
        return false;
    }
    return true;
}

int stdio_log_fd(void)
{
    return log_fd;
}

static bool packet_pipe(int fds[2], bool *packets)
{
    if (pipe2(fds, O_CLOEXEC | O_DIRECT) == 0)
        *packets = true;
    else if (errno == EINVAL && pipe2(fds, O_CLOEXEC) == 0)
        *packets = false;   /* no packet pipes here: lines still work, writes may merge */
    else
        return false;
    /* Best effort: a smaller pipe only makes a chatty worker wait sooner. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
    return true;
}

bool stdio_pipes_open(struct stdio_pipes *p)
{
    p->out[0] = p->out[1] = p->err[0] = p->err[1] = -1;
    if (!packet_pipe(p->out, &p->packets) || !packet_pipe(p->err, &p->packets)) {
        as_err("cannot start a worker: pipe: %s", strerror(errno));
        stdio_pipes_close(p);
        return false;
    }
    return true;
}

void stdio_pipes_close(struct stdio_pipes *p)
{
    int *fds[] = { &p->out[0], &p->out[1], &p->err[0], &p->err[1] };

    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

bool stdio_child(const struct stdio_pipes *p)
{
    return dup2(p->out[1], STDOUT_FILENO) >= 0 && dup2(p->err[1], STDERR_FILENO) >= 0 &&
           fcntl(log_fd, F_SETFD, 0) == 0;
}

static void emit(void *ctx, int priority, const char *text, size_t len)
{
    struct stdio_stream *s = ctx;
    const char *fields[] = { s->fields[0], s->fields[1], s->fields[2], s->request };

    as_log_relay(priority, "appstack-worker", s->pid, text, len, fields, s->request[0] ? 4 : 3);
}

static void stream_free(struct stdio_stream *s)
{
    stdio_entry_flush(&s->entry);
    stdio_entry_free(&s->entry);
    ev_io_stop(s->loop, &s->io);
    ev_timer_stop(s->loop, &s->quiet);
    close(s->io.fd);
    if (s->prev)
        s->prev->next = s->next;
    else
        streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/* The one request in progress, or NULL: with request threads ([supervisor]
 * threads) output read while several run cannot be told apart. */
static const struct as_req *only_request(const struct as_slot *sl)
{
    uint32_t threads = sl->threads < 1 ? 1 : sl->threads > AS_MAX_THREADS ? AS_MAX_THREADS : sl->threads;
    const struct as_req *found = NULL;

    for (uint32_t i = 0; i < threads; i++) {
        if (!sl->req[i].start)
            continue;
        if (found)
            return NULL;
        found = &sl->req[i];
    }
    return found;
}

/* The request the output being read now is about (see the top). */
static void note_request(struct stdio_stream *s)
{
    const struct as_slot *sl = s->slot;
    const struct as_req *r;
    char id[AS_REQUEST_ID_MAX];

    s->request[0] = '\0';
    if (!sl || sl->pid != s->pid || !(r = only_request(sl)))
        return;
    snprintf(id, sizeof id, "%.*s", (int)sizeof r->request_id, r->request_id);
    if (as_request_id_valid(id, strlen(id)))    /* not torn by a write in progress */
        snprintf(s->request, sizeof s->request, "APPSTACK_REQUEST_ID=%s", id);
}

static void readable_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct stdio_stream *s = io->data;
    char buf[PIPE_BUF];

    (void)revents;
    note_request(s);
    for (int i = 0; i < PACKETS_PER_TURN; i++) {
        ssize_t n = read(io->fd, buf, sizeof buf);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            if (n < 0)
                as_warn("reading the output of the worker with pid %d: %s", s->pid, strerror(errno));
            stream_free(s);     /* EOF: the worker and everything it started are done with it */
            return;
        }
        stdio_entry_feed(&s->entry, buf, (size_t)n, (size_t)n == sizeof buf);
    }
    if (stdio_entry_pending(&s->entry))
        ev_timer_again(loop, &s->quiet);
    else
        ev_timer_stop(loop, &s->quiet);
}

static void quiet_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct stdio_stream *s = t->data;

    (void)loop;
    (void)revents;
    stdio_entry_flush(&s->entry);
}

static void watch(struct ev_loop *loop, int fd, int priority, const char *name, int id,
                  unsigned generation, int pid, const struct as_slot *slot)
{
    struct stdio_stream *s = calloc(1, sizeof *s);

    if (!s || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        /* Closing our end makes the worker's writes fail (EPIPE) instead of
         * blocking forever on a pipe nobody reads. */
        as_err("cannot read the %s of worker %d: %s", name, id, s ? strerror(errno) : "out of memory");
        free(s);
        close(fd);
        return;
    }
    s->loop = loop;
    s->pid = pid;
    s->slot = slot;
    if (id)
        snprintf(s->fields[0], sizeof s->fields[0], "APPSTACK_WORKER=%d", id);
    else
        snprintf(s->fields[0], sizeof s->fields[0], "APPSTACK_WORKER=template");
    snprintf(s->fields[1], sizeof s->fields[1], "APPSTACK_GENERATION=%u", generation);
    snprintf(s->fields[2], sizeof s->fields[2], "APPSTACK_STREAM=%s", name);
    stdio_entry_init(&s->entry, priority, emit, s);
    ev_io_init(&s->io, readable_cb, fd, EV_READ);
    s->io.data = s;
    ev_io_start(loop, &s->io);
    ev_init(&s->quiet, quiet_cb);
    s->quiet.repeat = QUIET;
    s->quiet.data = s;
    s->next = streams;
    if (streams)
        streams->prev = s;
    streams = s;
}

void stdio_watch(struct ev_loop *loop, struct stdio_pipes *p, int stderr_priority, int id, unsigned generation,
                 int pid, const struct as_slot *slot)
{
    close(p->out[1]);
    close(p->err[1]);
    watch(loop, p->out[0], LOG_INFO, "stdout", id, generation, pid, slot);
    watch(loop, p->err[0], stderr_priority, "stderr", id, generation, pid, slot);
    p->out[0] = p->out[1] = p->err[0] = p->err[1] = -1;
}

void stdio_set_pid(int id, unsigned generation, int pid)
{
    char f_id[48], f_gen[48];

    snprintf(f_id, sizeof f_id, "APPSTACK_WORKER=%d", id);
    snprintf(f_gen, sizeof f_gen, "APPSTACK_GENERATION=%u", generation);
    for (struct stdio_stream *s = streams; s; s = s->next)
        if (!s->pid && !strcmp(s->fields[0], f_id) && !strcmp(s->fields[1], f_gen))
            s->pid = pid;
}

void stdio_drain_all(void)
{
    while (streams) {
        struct stdio_stream *s = streams;
        ev_invoke(s->loop, &s->io, EV_READ);    /* what is in the pipe now */
        if (streams == s)
            stream_free(s);
    }
}
