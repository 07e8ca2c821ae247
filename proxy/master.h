/* The master process of appstack-proxy (master.c) and the little its
 * serving processes (main.c's proxy_serve) share with it: a pipe on which
 * they tell it they are ready or have reloaded, and one shared page. */
#ifndef APPSTACK_PROXY_MASTER_H
#define APPSTACK_PROXY_MASTER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/config.h"

/* Serving processes and retiring ones (after a reload lowered `workers`)
 * side by side. */
#define PROXY_SLOTS (2 * AS_PROXY_MAX_WORKERS)

/* What a serving process tells the master: one write of a struct news on
 * a pipe (atomic, far below PIPE_BUF). */
enum news_kind { NEWS_READY, NEWS_RELOADED, NEWS_RELOAD_FAILED };
struct news {
    int32_t slot;
    int32_t kind;
};

/* One page shared by the master and every serving process. */
struct board {
    volatile int stopping;                  /* the whole proxy stops, not one process */
    volatile uint64_t beat[PROXY_SLOTS];    /* CLOCK_MONOTONIC usec of each process's last tick */
};
extern struct board *board;

/* The number of serving processes CFG asks for: `workers`, or for `auto`
 * the CPUs this process may run on (its affinity mask). */
int proxy_workers(const struct as_config *cfg);

/* The master's life, once the sockets and the configuration are ready:
 * forks the serving processes, keeps them, reloads and stops them.
 * Returns the exit status. */
int master_run(void);

/* In the master: HUP's reload (acme_run.c installs a new certificate with
 * it), and a STATUS= now rather than at the next 5 s. */
void master_reload(void);
void master_status_now(void);

/* In a serving process: tells the master. */
void master_tell(enum news_kind kind);
/* In a serving process: the heartbeat the master watches. */
void master_beat(void);

/* main.c: the serving process SLOT, just forked, with signals blocked
 * (MASK is the mask to restore once its own handlers are in place). Never
 * returns. */
__attribute__((noreturn)) void proxy_serve(int slot, const sigset_t *mask);

#endif
