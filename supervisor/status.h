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
/* The one-line summary for systemd's STATUS=. */
void status_summary(struct master *m, char *text, size_t n);

#endif
