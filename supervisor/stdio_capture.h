/* Workers' stdout and stderr into the log (stdio_capture.c). */
#ifndef APPSTACK_STDIO_CAPTURE_H
#define APPSTACK_STDIO_CAPTURE_H

#include <ev.h>
#include <stdbool.h>

struct stdio_pipes {
    int out[2], err[2];     /* [0] ours, [1] the worker's fd 1 / fd 2 */
    bool packets;
};

/* Once at start-up: the descriptor workers log their own messages on. */
bool stdio_init(void);
int stdio_log_fd(void);

/* Before fork. */
bool stdio_pipes_open(struct stdio_pipes *p);
void stdio_pipes_close(struct stdio_pipes *p);

/* In the child before exec: the pipes become fds 1 and 2 and the log
 * descriptor is kept. Plain syscalls only. */
bool stdio_child(const struct stdio_pipes *p);

struct as_slot;

/* In the parent after fork: read the worker's output from now on; SLOT
 * (the worker's scoreboard slot, which outlives the stream) tells which
 * request it serves. */
void stdio_watch(struct ev_loop *loop, struct stdio_pipes *p, int stderr_priority, int id, unsigned generation,
                 int pid, const struct as_slot *slot);

/* A worker watched with pid 0 (forked by a template) has this PID. */
void stdio_set_pid(int id, unsigned generation, int pid);

/* At exit: log what the pipes hold and close them. */
void stdio_drain_all(void);

#endif
