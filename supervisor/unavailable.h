/* appstackd's own 503 answer while no worker can serve (unavailable.c). */
#ifndef APPSTACK_UNAVAILABLE_H
#define APPSTACK_UNAVAILABLE_H

#include <stdbool.h>

struct master;

/* On: accept on the app sockets and answer 503 with Retry-After
 * RETRY_AFTER seconds (rounded up, at least 1). Off: leave them to the
 * workers. Cheap to call after every event. */
void unavailable_set(struct master *m, bool on, double retry_after);
bool unavailable_on(void);
/* At exit: stop and close every connection. */
void unavailable_close(void);

#endif
