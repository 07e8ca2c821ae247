/* appstackd's state: one master, its listening sockets, the scoreboard and
 * the table of workers. Every part of the supervisor works on this struct
 * from the single libev loop, so nothing here needs locking. */
#ifndef APPSTACK_MASTER_H
#define APPSTACK_MASTER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "scoreboard.h"

#define SUP_MAX_LISTEN 64
#define SUP_HEARTBEAT 0.25       /* s between timeout/deadline checks */
#define SUP_HANDOVER_WAIT 5.0    /* s a reload waits for old workers to leave the sockets */
#define SUP_MIN_LOAD_TIMEOUT 30  /* s an app import may take at least */
#define SUP_BACKOFF_FIRST 0.1    /* s before the first respawn after a failed start */
#define SUP_BACKOFF_MAX 30.0
#define SUP_STABLE_UPTIME 1.0    /* s after READY: a worker crashing sooner counts as a failed start */
#define SUP_FAST_STOP_GRACE 1.0  /* s between SIGQUIT and SIGKILL on a fast stop */

enum worker_state {
    W_FREE = 0,
    W_LOADING,      /* forked, app not imported yet */
    W_READY,        /* serving */
    W_STOPPING,     /* told to finish (SIGTERM) or to die; waiting for its exit */
};

struct master;
struct conn;

struct worker {
    struct master *m;
    enum worker_state state;
    pid_t pid;
    int id;                 /* "worker N", lowest free number */
    unsigned generation;
    int chan;               /* master's end of the channel; -1 once closed */
    ev_io chan_w;
    ev_tstamp started;
    ev_tstamp ready_at;     /* when it sent READY; 0 before */
    ev_tstamp deadline;     /* W_STOPPING: SIGKILL after this */
    bool killed;            /* SIGKILL sent: do not kill or log again */
    bool failed;            /* why it failed to load is in master.fail */
    /* max_requests hand-over (scoreboard.h): the old worker serves on until
     * its replacement is READY. The pair counts as one worker. */
    struct worker *replaced_by; /* old worker: its replacement, while that loads */
    struct worker *replaces;    /* replacement: the worker it takes over from */
};

struct reload {
    bool active;
    unsigned generation;    /* the generation being started */
    ev_tstamp deadline;
    char *error;            /* why it failed (traceback or config errors) */
    char *note;             /* extra line for the reply (e.g. listen changed) */
    bool handover;          /* old generation told to stop; waiting for it to stop accepting */
    bool again;             /* asked for again during the handover: run once more */
    ev_tstamp handover_deadline;
};

struct failure {
    char *text;             /* full text (traceback) of the last failed start */
    ev_tstamp when;
    int count;              /* consecutive failed starts; drives the backoff */
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
    uint64_t retired_requests;              /* served by workers that exited */

    unsigned generation;    /* the generation that serves */
    unsigned last_generation;
    int target;             /* workers wanted in that generation */
    bool first_ready;       /* READY=1 sent for the first generation */
    struct failure fail;
    ev_tstamp next_spawn;   /* backoff: no start attempt before this */
    struct reload reload;

    /* privileges the workers drop to (uid/gid -1: keep) */
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int n_groups;

    bool stopping;
    bool fast_stop;

    int control_fd;
    ev_io control_w;
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
void master_stop(struct master *m, bool fast);

/* spawn.c */
bool spawn_prepare(struct master *m);
struct worker *spawn_worker(struct master *m, unsigned generation);

/* workers.c */
void workers_maintain(struct master *m);
void workers_heartbeat(struct master *m);
void worker_exited(struct master *m, pid_t pid, int status);
void worker_chan_cb(struct ev_loop *loop, ev_io *io, int revents);
void worker_signal(struct worker *w, int sig);
void worker_retire(struct worker *w, ev_tstamp grace);
void worker_release(struct worker *w);
int workers_count(struct master *m, unsigned generation, bool ready_only);
bool workers_scale(struct master *m, int target);
uint64_t workers_total_requests(struct master *m);
void workers_send_status(struct master *m);
bool workers_all_gone(struct master *m);

/* reload.c */
void reload_start(struct master *m);
void reload_worker_ready(struct master *m, struct worker *w);
void reload_worker_failed(struct master *m, struct worker *w, const char *why);
void reload_check_deadline(struct master *m);
void reload_check_handover(struct master *m);

/* control.c */
bool control_open(struct master *m);
void control_close(struct master *m);
void control_reload_done(struct master *m, bool ok);
void control_reload_next(struct master *m);
void control_stop_done(struct master *m);

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
