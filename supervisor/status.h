/* The reply to `status` and `status --json`. */
#ifndef APPSTACK_STATUS_H
#define APPSTACK_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "master.h"

/* Returns a malloc'ed report. */
char *status_report(struct master *m, bool json);
/* The one-line summary for systemd's STATUS=. */
void status_summary(struct master *m, char *text, size_t n);

#endif
