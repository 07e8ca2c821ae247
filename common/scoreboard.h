/* The scoreboard: one shared-memory page of slots that appstackd creates
 * (memfd) before the first worker and every worker maps. A worker writes its
 * own slot only; the master reads every slot for heartbeats, timeouts and
 * `supctl status`, and writes take_queued only. No locks: each field is
 * written by one process and a torn read of method/path only ever reaches a
 * log line. */
#ifndef APPSTACK_SCOREBOARD_H
#define APPSTACK_SCOREBOARD_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

#define AS_SCOREBOARD_SLOTS 1024

enum as_slot_state {
    AS_SLOT_FREE = 0,
    AS_SLOT_LOADING,    /* importing the app */
    AS_SLOT_IDLE,       /* waiting for a request */
    AS_SLOT_BUSY,       /* inside the app */
    AS_SLOT_STOPPING,   /* finishing its last request */
    AS_SLOT_RECYCLE,    /* max_requests reached: still serving (idle or busy,
                         * the requests' start says) until the master's SIGTERM */
};

/* A request in progress. A worker has one per request thread ([supervisor]
 * threads); start is written last when it begins and first when it ends. */
struct as_req {
    volatile uint64_t start;          /* CLOCK_MONOTONIC usec, 0 when the thread is idle */
    volatile uint64_t thread;         /* pthread_self() of its thread, as stack dumps name it */
    char method[16];
    char path[208];
    char request_id[64];              /* X-Request-ID of the request, "" = none (AS_REQUEST_ID_MAX) */
};

struct as_slot {
    volatile uint32_t state;          /* enum as_slot_state; BUSY: a request is in progress */
    volatile int32_t pid;
    volatile uint64_t requests;       /* served since start */
    volatile uint64_t errors;         /* of those, answered with a 5xx status */
    volatile uint64_t heartbeat;      /* CLOCK_MONOTONIC usec of last loop turn */
    volatile uint32_t threads;        /* request threads: entries of req in use */
    struct as_req req[AS_MAX_THREADS];/* (the memfd is sparse: unused entries cost nothing) */
};

struct as_scoreboard {
    /* The whole server stops gracefully (appstackd's TERM): bit I is set
     * for each listening socket appstackd bound itself (entry I of
     * APPSTACK_LISTEN_FDS; systemd's keep their queue for the next start)
     * before the master sends the workers SIGTERM. A worker that gets
     * SIGTERM takes the connections queued on those sockets before it
     * leaves (worker/loop.c take_queued); a worker that stops alone
     * (reload, scale-down, max_requests) finds no bit and leaves them to
     * the workers that stay. The socket filter of as_listen_refuse_new()
     * cannot tell this: a kernel may refuse it to an unprivileged
     * appstackd. */
    volatile uint64_t take_queued;
    struct as_slot slot[AS_SCOREBOARD_SLOTS];
};

/* Environment a worker started by appstackd receives. Without them a worker
 * runs standalone (binds its own sockets, no scoreboard). */
#define AS_ENV_WORKER_ID   "APPSTACK_WORKER_ID"    /* decimal id shown in status/logs */
#define AS_ENV_GENERATION  "APPSTACK_GENERATION"   /* decimal */
#define AS_ENV_SLOT        "APPSTACK_SLOT"         /* index into the scoreboard */
#define AS_ENV_SCOREBOARD  "APPSTACK_SCOREBOARD_FD"/* memfd with struct as_scoreboard */
#define AS_ENV_CHANNEL     "APPSTACK_CHANNEL_FD"   /* SOCK_SEQPACKET to the master */
#define AS_ENV_LISTEN_FDS  "APPSTACK_LISTEN_FDS"   /* "3,4": the listening sockets */
#define AS_ENV_MAX_REQUESTS "APPSTACK_MAX_REQUESTS"/* this worker's limit, jitter applied; 0 = none */
#define AS_ENV_LOG_FD      "APPSTACK_LOG_FD"       /* appstackd's own stderr (maybe the journal), for
                                                    * the worker's own messages: its fds 1 and 2 are
                                                    * pipes to appstackd (supervisor/stdio_capture.c) */

#define AS_ENV_DUMP_FD     "APPSTACK_DUMP_FD"      /* pipe to appstackd for stack dumps */
#define AS_ENV_TEMPLATE    "APPSTACK_TEMPLATE"     /* "1": the template of a generation ([app] preload):
                                                    * no id, slot, dump pipe or max_requests of its own */

/* Stack dumps: on AS_SIG_DUMP the worker writes the Python stack of every
 * thread to the APPSTACK_DUMP_FD pipe, then a NUL byte. appstackd starts
 * workers with the signal blocked; the worker unblocks it once it can
 * answer. */
#define AS_SIG_DUMP (SIGRTMIN + 2)

/* Channel messages, worker -> master, one per datagram:
 *   "READY"              app imported, accepting
 *   "FAILED\n<text>"     app import failed; text is the Python traceback
 * Master -> worker: signals only. SIGTERM: finish the current request, stop
 * accepting, exit 0. SIGQUIT/SIGINT: exit now. SIGKILL on timeout.
 *
 * max_requests: a worker that reaches its limit does not stop by itself (that
 * would leave its share of the sockets unserved while a replacement loads).
 * It keeps serving and leaves its slot in AS_SLOT_RECYCLE from then on; the
 * master starts a replacement in the same generation and sends the old
 * worker SIGTERM once the replacement is READY. A standalone worker (no
 * master) has nobody to replace it and exits 0 at its limit instead. */
#define AS_MSG_READY  "READY"
#define AS_MSG_FAILED "FAILED\n"

/* [app] preload = on: the template (worker/template.c) imports the app,
 * says READY (or FAILED) like a worker, and then forks a worker for each
 *   "FORK <id> <slot> <max_requests>"   master -> template
 * that carries, as SCM_RIGHTS, the new worker's channel, dump pipe, stdout
 * and stderr (AS_FORK_FDS, in that order). The worker is forked twice so
 * that it becomes appstackd's child (appstackd is a child subreaper); its
 * first message on its own channel is
 *   "PID <pid>"                         forked worker -> master
 * and from then on it is an ordinary worker. A worker the template cannot
 * fork never writes: the master sees its channel close instead. */
#define AS_MSG_FORK   "FORK "
#define AS_MSG_PID    "PID "
#define AS_FORK_FDS   4

#endif
