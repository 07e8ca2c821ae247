/* The reply to `status` and `status --json`. */
#ifndef APPSTACK_STATUS_H
#define APPSTACK_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "master.h"

/* Returns a malloc'ed report. */
char *status_report(struct master *m, bool json);
/* "worker N (pid P, generation G, busy: GET /path for 1.2 s)", malloc'ed. */
char *status_worker_head(const struct worker *w);
/* A worker's state as status, top and metrics name it: loading, idle,
 * busy (BUSY: a request in progress), recycling, stopping. */
const char *status_state_name(const struct worker *w, bool busy);
/* "crash", "timeout", ... by enum worker_end (the restart causes). */
extern const char *const status_restart_cause[LAST_RESTART_CAUSE + 1];
/* The reply to `top` (ctlproto.h), malloc'ed. */
char *status_top(struct master *m);
/* The last line of TEXT with something on it, into BUF (N bytes): the
 * line a traceback or a failed start ends with. Returns BUF. */
const char *status_last_line(const char *text, char *buf, size_t n);
/* The one-line summary for systemd's STATUS=. */
void status_summary(struct master *m, char *text, size_t n);

#endif
