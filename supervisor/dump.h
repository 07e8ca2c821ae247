/* Python stacks of a live worker, without stopping it: appstackd sends
 * AS_SIG_DUMP and reads the answer on the worker's dump pipe
 * (common/scoreboard.h). Whoever asks waits with a struct dump_waiter; one
 * signal answers everyone waiting on the same worker. */
#ifndef APPSTACK_SUP_DUMP_H
#define APPSTACK_SUP_DUMP_H

#include <ev.h>
#include <stdbool.h>

#include "sbuf.h"

#define DUMP_WAIT 0.5           /* s a worker gets to answer */
#define DUMP_MAX (1 << 20)      /* bytes kept of one dump */

struct worker;

struct dump_waiter {
    struct dump_waiter *next, **prevp;
    /* STACKS: the dump, or NULL with MISSING saying why there is none. */
    void (*done)(struct dump_waiter *dw, struct worker *w, const char *stacks, const char *missing);
};

/* The part of a worker that dumps (in struct worker). */
struct dump_state {
    int fd;                     /* read end of the dump pipe; -1 none */
    ev_io io;
    ev_timer deadline;
    struct sbuf buf;            /* what came so far */
    bool asked;                 /* signal sent, no answer yet */
    int late;                   /* dumps that timed out: their answers may still come */
    struct dump_waiter *waiters;
};

void dump_init(struct worker *w);          /* once per table entry */
void dump_attach(struct worker *w, int fd);
/* The worker is gone: waiters are told so, the pipe closed. */
void dump_detach(struct worker *w);
/* Asks W for its stacks; false when it cannot be asked (no process). */
bool dump_ask(struct worker *w, struct dump_waiter *dw);
void dump_cancel(struct dump_waiter *dw);

#endif
