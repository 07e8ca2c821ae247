/* The master's reading of a worker's scoreboard slot (common/scoreboard.h).
 * What appstackd learns from the scoreboard goes through here, so that a
 * change of the slot's layout (several requests per worker) is made in one
 * place; the one other reader is stdio_capture.c (only_request), which
 * takes the request ID of a worker's one request for the output it writes
 * meanwhile, at the moment the bytes are read. */
#ifndef APPSTACK_SUP_SLOT_H
#define APPSTACK_SUP_SLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "scoreboard.h"

struct worker;

/* A request in progress, as the slot shows it. */
struct reqview {
    char method[sizeof ((struct as_req *)0)->method + 1];
    char path[sizeof ((struct as_req *)0)->path + 1];
    char request_id[sizeof ((struct as_req *)0)->request_id + 1];   /* "" = none */
    uint64_t start;         /* CLOCK_MONOTONIC usec */
    double age;             /* s it has run */
    uint64_t thread;        /* the thread that runs it (pthread_self), 0 unknown */
};

/* One per request thread ([supervisor] threads). */
#define SLOT_MAX_REQUESTS AS_MAX_THREADS

struct as_slot *slot_of(const struct worker *w);
void slot_reset(const struct worker *w, pid_t pid);
/* The requests W serves now, oldest first; returns how many (<= MAX). */
int slot_requests(const struct worker *w, uint64_t now_us, struct reqview *out, int max);
uint64_t slot_served(const struct worker *w);
/* Of those, the ones answered with a 5xx status. */
uint64_t slot_errors(const struct worker *w);
/* The worker reached max_requests and asks to be replaced. */
bool slot_wants_recycle(const struct worker *w);
/* When its loop last turned or took a request (CLOCK_MONOTONIC usec). */
uint64_t slot_last_turn(const struct worker *w);
/* Idle in its loop: it may take the next connection from the sockets. */
bool slot_waits_on_sockets(const struct worker *w);

#endif
