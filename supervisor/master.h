/* appstackd's state: one master, its listening sockets, the scoreboard, the
 * table of workers and the generations that own them. Every part of the
 * supervisor works on this struct from the single libev loop, so nothing
 * here needs locking.
 *
 * Who calls whom (no file calls back into one above it; upward news goes
 * through return values or callbacks set from above):
 *   main -> master (loop, signals, timers) -> lifecycle (events, reload,
 *   scale, stop) -> generation (target, backoff, hand-over) -> worker (one
 *   state, worker_step) -> dump (stacks) ; generation -> template (its
 *   template process with preload, template_step) ; generation, template
 *   -> spawn (fork + exec, or a fork by the template) ; control (supctl)
 *   -> lifecycle, status, dump ; status -> generation, worker, slot. */
#ifndef APPSTACK_MASTER_H
#define APPSTACK_MASTER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "accept_rest.h"
#include "config.h"
#include "generation.h"
#include "metrics_server.h"
#include "scoreboard.h"
#include "worker.h"

#define SUP_MAX_LISTEN 64
#define SUP_HEARTBEAT 0.25       /* s between timeout/deadline checks */
#define SUP_HANDOVER_WAIT 5.0    /* s a reload waits for old workers to leave the sockets */
#define SUP_MIN_LOAD_TIMEOUT 30  /* s an app import may take at least */
#define SUP_BACKOFF_FIRST 0.1    /* s before the first respawn after a failed start */
#define SUP_BACKOFF_MAX 30.0
#define SUP_STABLE_UPTIME 1.0    /* s after READY: a worker crashing sooner counts as a failed start */
#define SUP_FAST_STOP_GRACE 1.0  /* s between SIGQUIT and SIGKILL on a fast stop */
#define SUP_RSS_EVERY 1.0        /* s between max_rss checks */

struct conn;

/* What appstackd counts over its life (supctl status; the figures a
 * metrics endpoint exports). Written by generation.c and lifecycle.c. */
struct sup_counters {
    uint64_t retired_requests;                  /* served by workers that have exited */
    uint64_t retired_errors;                    /* ... and answered 5xx */
    uint64_t restarts[LAST_RESTART_CAUSE + 1];    /* by enum worker_end, CRASH..MAX_RSS */
    uint64_t reloads_ok, reloads_failed;
};

struct master {
    struct ev_loop *loop;
    struct as_config cfg;
    char *config_path;
    char *worker_path;
    ev_tstamp started;

    int listen_fd[SUP_MAX_LISTEN];
    char *listen_name[SUP_MAX_LISTEN];      /* address, for status */
    bool listen_inherited[SUP_MAX_LISTEN];
    int n_listen;

    int sb_fd;
    struct as_scoreboard *sb;
    struct worker w[AS_SCOREBOARD_SLOTS];   /* index == scoreboard slot */

    /* lifecycle.c */
    struct generation *gens;    /* every generation with workers, oldest first */
    struct generation *serving; /* the one that serves (the first one while it loads) */
    struct generation *pending; /* a reload's: loading, or promoted and handing over */
    unsigned last_generation;
    bool ready_sent;            /* READY=1 sent: the first generation was complete once */
    ev_tstamp handover_deadline;
    bool reload_again;          /* asked for during a hand-over: run once more after it */
    struct waiter *next_waiters;/* ...and who waits for that one */
    char *reload_note;          /* extra line for the reload's reply (listen changed) */
    struct {
        char *text;             /* full text (traceback) of the last failed start */
        ev_tstamp when;
    } last_failure;
    struct sup_counters counters;
    ev_tstamp rss_checked;      /* last max_rss check */

    /* privileges the workers drop to (uid/gid -1: keep) */
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int n_groups;

    bool stopping;
    bool fast_stop;

    int control_fd;
    ev_io control_w;
    struct as_accept_rest control_rest; /* out of descriptors: control_w rests */
    struct metrics_server metrics;  /* metrics = ADDR; fd -1 when off */
    struct conn *conns;     /* open control connections */

    ev_timer heartbeat_w;
    ev_timer spawn_w;
    ev_timer watchdog_w;
    ev_child child_w;
    ev_signal sig_w[6];
    char last_status[256];
};

/* master.c */
int master_run(struct master *m);
/* A graceful stop, before the workers hear of it: the sockets appstackd
 * bound take no new connection where the kernel allows it, and the
 * scoreboard's take_queued tells the workers to serve every one queued
 * before they leave (systemd's sockets are left alone: their queues wait
 * for the next start). */
void master_refuse_new(struct master *m);
/* Once the workers are told: the master's copies of the sockets it bound
 * are closed, so that the last worker's close ends each socket. A socket
 * still open here would go on completing handshakes that nobody accepts,
 * reset when appstackd exits. */
void master_close_bound_sockets(struct master *m);

/* lifecycle.c: every event about workers enters here */
void lifecycle_init(struct master *m);
void lifecycle_start(struct master *m);
void lifecycle_reload(struct master *m, struct waiter *wt);
bool lifecycle_scale(struct master *m, int target);
void lifecycle_stop(struct master *m, bool fast);
void lifecycle_tick(struct master *m);
void lifecycle_child_exited(struct master *m, pid_t pid, int status);
void lifecycle_spawn_due(struct master *m);
void lifecycle_free(struct master *m);
int lifecycle_target(const struct master *m);
/* Some worker takes connections now (serving or recycling). */
bool lifecycle_serves(const struct master *m);
uint64_t lifecycle_requests(const struct master *m);
uint64_t lifecycle_errors(const struct master *m);      /* of those, answered 5xx */

/* reload.c: the configuration a reload reads */
bool reload_config(struct master *m, char **errors, int *workers);

/* spawn.c */
bool spawn_prepare(struct master *m);
/* Forks and execs appstack-worker for W of GENERATION: its pid, and the
 * master's ends of its channel and dump pipe; -1 on failure (logged). */
pid_t spawn_process(struct master *m, const struct worker *w, unsigned generation, int *chan, int *dump);
/* Forks and execs the template of GENERATION: its pid and the master's end
 * of its channel; -1 on failure (logged). */
pid_t spawn_template(struct master *m, unsigned generation, int *chan);
/* Asks the template on TMPL_CHAN to fork W: the master's ends of W's
 * channel and dump pipe; false on failure (logged). The pid comes later
 * (worker_forked). */
bool spawn_fork(struct master *m, const struct worker *w, int tmpl_chan, unsigned generation, int *chan, int *dump);

/* control.c */
bool control_open(struct master *m);
void control_close(struct master *m);
void control_stop_done(struct master *m);

/* metrics.c: /metrics and /healthz */
bool sup_metrics_open(struct master *m);
void sup_metrics_close(struct master *m);
/* A generation serves: not before the first one is complete, nor while
 * stopping; WHY says what is missing. */
bool sup_ready(struct master *m, const char **why);

/* notify.c */
void notify_init(struct master *m);
void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(struct master *m, const char *text);

/* helpers */
ev_tstamp load_timeout(const struct master *m);
uint64_t mono_usec(void);

#endif
