/* One worker process as appstackd sees it. A worker has one state, and only
 * worker_step() changes it, fed by the events below; what the step means for
 * the worker's generation (respawn, backoff, hand-over, a failed reload) is
 * decided by generation.c from the outcome it returns. */
#ifndef APPSTACK_SUP_WORKER_H
#define APPSTACK_SUP_WORKER_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

#include "dump.h"
#include "slot.h"

struct master;
struct generation;

enum worker_state {
    W_FREE = 0,     /* table entry unused */
    W_LOADING,      /* forked, importing the app */
    W_SERVING,      /* READY: accepts on the sockets */
    W_RECYCLING,    /* serving until a replacement is READY (max_requests, max_rss) */
    W_STOPPING,     /* told to finish (SIGTERM) or to quit (SIGQUIT); SIGKILL at w->deadline */
    W_DUMPING,      /* stuck (timeout, heartbeat): its stacks are read, then SIGKILL */
    W_KILLED,       /* SIGKILL sent; waiting to reap it */
};

/* Why a worker ends, once that is known. CRASH..MAX_RSS are the causes of a
 * restart (appstack_worker_restarts_total{cause}). */
enum worker_end {
    END_NONE = 0,
    END_CRASH,          /* died or exited by itself, or was killed from outside */
    END_TIMEOUT,        /* a request outlived `timeout` */
    END_HEARTBEAT,      /* its loop did not turn for `timeout` */
    END_MAX_REQUESTS,
    END_MAX_RSS,
    END_RETIRED,        /* reload, scale-down, stop */
};
#define LAST_RESTART_CAUSE END_MAX_RSS  /* restart counters are indexed END_CRASH..this */

enum wev {
    WEV_READY,          /* the worker sent READY */
    WEV_FAILED,         /* it sent FAILED and the traceback (text) */
    WEV_EXITED,         /* reaped (status) */
    WEV_LOAD_TIMEOUT,   /* loading for longer than load_timeout() */
    WEV_TIMEOUT,        /* a request ran longer than `timeout` (req) */
    WEV_HEARTBEAT,      /* its loop has not turned for `timeout` (age) */
    WEV_RECYCLE,        /* it should be replaced (cause: max_requests, max_rss) */
    WEV_REPLACED,       /* its replacement is READY */
    WEV_RETIRE,         /* finish the requests in flight and exit */
    WEV_QUIT,           /* exit now (fast stop) */
    WEV_DEADLINE,       /* W_STOPPING past its deadline */
    WEV_STACKS,         /* the stacks asked for before a kill (text, or missing) */
    WEV_NOT_FORKED,     /* its template will not fork it (its channel closed before PID) */
};

struct wevent {
    enum wev kind;
    int status;                 /* WEV_EXITED: wait status */
    const char *text;           /* WEV_FAILED, WEV_STACKS */
    const char *missing;        /* WEV_STACKS: why there are none */
    enum worker_end cause;      /* WEV_RECYCLE */
    const struct reqview *req;  /* WEV_TIMEOUT */
    double age;                 /* WEV_HEARTBEAT: s since its loop last turned */
    long long rss;              /* WEV_RECYCLE for max_rss: bytes */
};

/* What the generation has to act on after a step. */
enum wout {
    WO_NONE,
    WO_READY,           /* now serving */
    WO_LOAD_FAILED,     /* it cannot load the app (w->error says why) */
    WO_RECYCLE,         /* wants a replacement (again, while it has none) */
    WO_EXITED,          /* reaped: w->end, w->start_failed, w->error tell the rest */
};

struct worker {
    struct master *m;
    struct generation *gen;         /* owner; NULL while W_FREE */
    struct worker *gen_next;        /* the generation's list */
    enum worker_state state;
    enum worker_end end;
    bool start_failed;      /* its end counts as a failed start (backoff) */
    char *error;            /* why it could not start (traceback), malloc'ed */
    pid_t pid;              /* 0 while its template forks it ([app] preload) */
    int pending_sig;        /* signalled while pid was 0: sent once it is known */
    int id;                 /* "worker N", lowest free number */
    int chan;               /* master's end of the channel; -1 once closed */
    ev_io chan_w;           /* callback set once by lifecycle_init() */
    ev_tstamp started;
    ev_tstamp ready_at;     /* when it sent READY; 0 before */
    ev_tstamp deadline;     /* W_STOPPING: SIGKILL after this */
    double grace;           /* W_STOPPING: the time it was given */
    /* Hand-over (generation.c): the old worker serves on until its
     * replacement is READY; the pair counts as one worker. */
    struct worker *replaced_by;
    struct worker *replaces;
    struct dump_state dump;         /* its stack dumps (dump.c) */
    struct dump_waiter kill_dump;   /* W_DUMPING: callback set once by lifecycle_init() */
    /* Why it is being killed (W_DUMPING), for the one log entry. */
    struct {
        enum worker_end cause;      /* END_TIMEOUT, END_HEARTBEAT */
        bool in_request;
        struct reqview req;
        double age;                 /* s the request ran, or since the loop turned */
    } stuck;
};

/* Table entry for a new worker (lowest free id), or NULL when full. */
struct worker *worker_alloc(struct master *m);
/* The process runs (or its template forks it: PID 0): W_LOADING, channel
 * and dump pipe watched. */
void worker_started(struct worker *w, struct generation *g, pid_t pid, int chan, int dump);
/* A worker forked by a template said who it is. */
void worker_forked(struct worker *w, pid_t pid);
enum wout worker_step(struct worker *w, const struct wevent *ev);

bool worker_live(const struct worker *w);       /* loading or serving: counts toward a target */
bool worker_ready(const struct worker *w);      /* serving (recycling too) */
int worker_slot(const struct worker *w);
unsigned worker_generation(const struct worker *w);
struct worker *worker_by_pid(struct master *m, pid_t pid);
void worker_signal(struct worker *w, int sig);
/* Reads one channel message into BUF (NUL-terminated): its length, 0 when
 * there is none, -1 when the channel closed (then closed here too). */
ssize_t worker_recv(struct worker *w, char *buf, size_t size);
/* A message about W with APPSTACK_WORKER/APPSTACK_GENERATION (appstack(7)). */
void worker_log(const struct worker *w, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
