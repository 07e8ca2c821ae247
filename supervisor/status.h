/* The reply to `status` and `status --json`. */
#ifndef APPSTACK_STATUS_H
#define APPSTACK_STATUS_H

#include <stdbool.h>

#include "master.h"

/* Returns a malloc'ed report. */
char *status_report(struct master *m, bool json);

#endif
