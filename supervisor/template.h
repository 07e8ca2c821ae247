/* A generation's template ([app] preload = on): the process that imports
 * the app once and forks the generation's workers (worker/template.c; the
 * protocol is in common/scoreboard.h). It never serves, so it is no
 * worker: no id, no scoreboard slot, no part of a target. It has one state
 * at a time, changed only by template_step(), fed by events as a worker's
 * is; its generation (generation.c) acts on the outcome. */
#ifndef APPSTACK_SUP_TEMPLATE_H
#define APPSTACK_SUP_TEMPLATE_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

struct master;
struct generation;

enum tmpl_state {
    T_NONE = 0,     /* no process */
    T_LOADING,      /* started: importing the app */
    T_READY,        /* forks workers when asked */
    T_STOPPING,     /* told to exit (SIGTERM); SIGKILL at its deadline */
    T_KILLED,       /* SIGKILL sent; waiting to reap it */
};

enum tev {
    TEV_READY,          /* it sent READY */
    TEV_FAILED,         /* it sent FAILED and the traceback (text) */
    TEV_EXITED,         /* reaped (status) */
    TEV_LOAD_TIMEOUT,   /* loading for longer than load_timeout() */
    TEV_STUCK,          /* a worker it was asked to fork did not come within load_timeout() */
    TEV_RETIRE,         /* its generation starts no more workers */
    TEV_DEADLINE,       /* T_STOPPING past its deadline */
};

struct tevent {
    enum tev kind;
    int status;         /* TEV_EXITED */
    const char *text;   /* TEV_FAILED */
    int worker;         /* TEV_STUCK: the worker's id */
};

enum tout {
    TO_NONE,
    TO_READY,           /* workers can be forked now */
    TO_LOAD_FAILED,     /* it cannot load the app (t->error says why) */
    TO_EXITED,          /* reaped: t->start_failed and t->error tell the rest */
};

struct template {
    struct master *m;
    struct generation *gen;
    enum tmpl_state state;
    pid_t pid;
    int chan;               /* master's end of its channel; -1 once closed */
    ev_io chan_w;           /* callback set by template_init()'s caller */
    ev_tstamp started;
    ev_tstamp deadline;     /* T_STOPPING: SIGKILL after this */
    bool start_failed;      /* its end counts as a failed start (backoff) */
    bool retired;           /* told to go: its end is no failure */
    char *error;            /* why it could not load the app, malloc'ed */
};

void template_init(struct template *t, struct generation *g, void (*chan_cb)(struct ev_loop *, ev_io *, int));
/* Starts the process: T_LOADING. False when it cannot (logged). */
bool template_start(struct template *t);
enum tout template_step(struct template *t, const struct tevent *ev);
/* The event the clock has for T now, if any. */
bool template_check(const struct template *t, ev_tstamp now, struct tevent *ev);
/* Reads one channel message into BUF (NUL-terminated): its length, 0 when
 * there is none, -1 when the channel closed (then closed here too). */
ssize_t template_recv(struct template *t, char *buf, size_t size);
const char *template_state_name(const struct template *t);
void template_free(struct template *t);

#endif
