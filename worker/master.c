/* The worker's side of the contract with appstackd (common/scoreboard.h):
 * its scoreboard slot and the channel. Standalone, the slot is private
 * memory so that the rest of the worker never has to ask which mode it is. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "request_id.h"

static struct as_slot private_slot;

static bool env_long(const char *name, long min, long max, long *out)
{
    const char *s = getenv(name);

    if (!s || !as_parse_long(s, min, max, out)) {
        as_err("environment variable %s is missing or invalid (\"%s\")", name, s ? s : "");
        return false;
    }
    return true;
}

static bool map_scoreboard(long fd)
{
    void *p = mmap(NULL, sizeof(struct as_scoreboard), PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);

    if (p == MAP_FAILED) {
        as_err("cannot map the scoreboard (fd %ld): %s", fd, strerror(errno));
        return false;
    }
    close((int)fd);
    W.sb = p;
    return true;
}

/* appstackd's own stderr (maybe the journal), for our own messages. */
static bool log_fd(void)
{
    long fd;

    if (!getenv(AS_ENV_LOG_FD))
        return true;
    if (!env_long(AS_ENV_LOG_FD, 0, 1 << 20, &fd))
        return false;
    /* The app's subprocesses get fds 1 and 2, never this one. */
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
        as_err("log fd %ld: %s", fd, strerror(errno));
        return false;
    }
    as_log_set_fd((int)fd);
    return true;
}

/* Reads the APPSTACK_* environment. False when it is present but wrong;
 * W.standalone when it is absent. A template ([app] preload) has no
 * worker id, slot or limit: the workers it forks get theirs from the
 * master's FORK message (wk_master_bind). */
bool wk_master_attach(void)
{
    long id = 0, gen, slot = 0, sb, chan, maxr = 0;

    W.slot = &private_slot;
    wk_loop_request.slot_req = &W.slot->req[0];
    W.channel_fd = -1;
    if (!getenv(AS_ENV_CHANNEL)) {
        W.standalone = true;
        return true;
    }
    W.template = getenv(AS_ENV_TEMPLATE) != NULL;
    if (!env_long(AS_ENV_GENERATION, 0, 1L << 31, &gen) || !env_long(AS_ENV_SCOREBOARD, 0, 1 << 20, &sb) ||
        !env_long(AS_ENV_CHANNEL, 0, 1 << 20, &chan))
        return false;
    if (!W.template &&
        (!env_long(AS_ENV_WORKER_ID, 0, 1000000, &id) || !env_long(AS_ENV_SLOT, 0, AS_SCOREBOARD_SLOTS - 1, &slot)))
        return false;
    if (!W.template && getenv(AS_ENV_MAX_REQUESTS) && !env_long(AS_ENV_MAX_REQUESTS, 0, 1L << 40, &maxr))
        return false;
    W.generation = (unsigned)gen;
    W.channel_fd = (int)chan;
    W.master_pid = getppid();
    /* Whatever the app runs must not hold the master's channel open. */
    if (fcntl(W.channel_fd, F_SETFD, FD_CLOEXEC) < 0) {
        as_err("channel fd %d: %s", W.channel_fd, strerror(errno));
        return false;
    }
    if (!log_fd() || !map_scoreboard(sb))
        return false;
    if (W.template) {
        as_log_add_global_field("APPSTACK_WORKER=template");
        wk_log_generation();
        return true;
    }
    wk_master_bind((int)id, (int)slot, (uint64_t)maxr);
    return true;
}

void wk_log_generation(void)
{
    char field[64];

    snprintf(field, sizeof field, "APPSTACK_GENERATION=%u", W.generation);
    as_log_add_global_field(field);
}

/* From now on this process is worker ID in scoreboard slot SLOT. */
void wk_master_bind(int id, int slot, uint64_t max_requests)
{
    char field[64];

    W.id = id;
    W.max_requests = max_requests;
    W.slot = &W.sb->slot[slot];
    as_log_clear_global_fields();
    snprintf(field, sizeof field, "APPSTACK_WORKER=%d", W.id);
    as_log_add_global_field(field);
    wk_log_generation();
    W.slot->pid = (int32_t)getpid();
    W.slot->requests = 0;
    W.slot->req[0].start = 0;
    wk_loop_request.slot_req = &W.slot->req[0];
}

/* One datagram to the master. A lost message is the master's timeout to
 * handle: nothing here may block the worker for long. */
void wk_master_send(const char *msg, size_t len)
{
    if (W.channel_fd < 0)
        return;
    while (send(W.channel_fd, msg, len, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EMSGSIZE && len > 4096) {
            len /= 2;       /* a huge traceback: its start is still the best we have */
            continue;
        }
        as_warn("cannot write to the master's channel: %s", strerror(errno));
        return;
    }
}

void wk_slot_state(enum as_slot_state st)
{
    W.slot->state = st;
    W.slot->heartbeat = wk_now_usec();
}

void wk_slot_heartbeat(void)
{
    W.slot->heartbeat = wk_now_usec();
}

static void copy_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void wk_slot_threads(int threads)
{
    W.slot->threads = (uint32_t)threads;
}

void wk_slot_request_begin(const char *method, const char *target, size_t target_len, const char *rid,
                           size_t rid_len)
{
    struct as_req *q = R.slot_req;
    const char *qm = memchr(target, '?', target_len);
    char field[AS_REQUEST_ID_MAX + 24];

    if (qm)
        target_len = (size_t)(qm - target);
    copy_field(q->method, sizeof q->method, method, strlen(method));
    copy_field(q->path, sizeof q->path, target, target_len);
    copy_field(q->request_id, sizeof q->request_id, rid, rid_len);
    if (rid_len) {
        snprintf(field, sizeof field, "APPSTACK_REQUEST_ID=%s", q->request_id);
        as_log_set_request_field(field);    /* this thread's messages */
    }
    /* Several threads: which one, as the stack dumps name it. */
    q->thread = W.threads > 1 ? (uint64_t)pthread_self() : 0;
    W.busy++;
    W.slot->state = W.recycle ? AS_SLOT_RECYCLE : AS_SLOT_BUSY;
    q->start = wk_now_usec();
}

/* At max_requests: a standalone worker stops; one with a master asks to be
 * replaced and serves on until the replacement is ready (scoreboard.h). */
static void check_limit(uint64_t requests)
{
    if (!W.max_requests || requests < W.max_requests || W.recycle)
        return;
    if (W.standalone) {
        W.stopping = true;
    } else {
        W.recycle = true;
        as_info("%llu requests served (max_requests): serving on until a replacement is ready",
                (unsigned long long)requests);
    }
}

/* What the app wrote to fds 1 and 2 while it served the request (pipes to
 * appstackd, supervisor/stdio_capture.c) gets the request's ID from the
 * slot when appstackd reads it. appstackd reads within microseconds, but
 * a view that logs and returns may end the request before that: so the
 * request ends only once the pipes are empty, or after OUTPUT_WAIT (a
 * child process that keeps writing). On a machine whose CPUs are all busy
 * appstackd may not run for tens of milliseconds: 10 ms lost IDs there.
 * Two ioctls, only for requests with an ID. */
#define OUTPUT_WAIT 0.1

static bool output_unread(void)
{
    int n = 0;

    return (ioctl(STDOUT_FILENO, FIONREAD, &n) == 0 && n > 0) || (ioctl(STDERR_FILENO, FIONREAD, &n) == 0 && n > 0);
}

static void wait_output_read(void)
{
    double deadline;

    if (W.standalone || !output_unread())
        return;
    deadline = wk_now() + OUTPUT_WAIT;
    Py_BEGIN_ALLOW_THREADS      /* other request threads go on meanwhile */
    do {
        struct timespec ts = { 0, 50000 };
        nanosleep(&ts, NULL);
    } while (output_unread() && wk_now() < deadline);
    Py_END_ALLOW_THREADS
}

void wk_slot_request_end(void)
{
    struct as_slot *s = W.slot;
    struct as_req *q = R.slot_req;
    uint64_t served, now;

    if (q->request_id[0])
        wait_output_read();
    now = wk_now_usec();
    q->start = 0;
    q->request_id[0] = '\0';
    as_log_set_request_field(NULL);
    W.busy--;
    served = s->requests + 1;   /* after the wait: other threads may have served meanwhile */
    check_limit(served);
    if (W.stopping)
        s->state = AS_SLOT_STOPPING;
    else
        s->state = W.recycle ? AS_SLOT_RECYCLE : W.busy ? AS_SLOT_BUSY : AS_SLOT_IDLE;
    if (R.code >= 500)
        s->errors++;
    s->requests = served;   /* last: a reader that sees the count sees the state too */
    s->heartbeat = now;
}
