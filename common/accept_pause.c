/* accept4() failures (see accept_pause.h). */
#include "accept_pause.h"

#include <errno.h>
#include <string.h>

#include "log.h"

enum as_accept_next as_accept_failed(struct as_accept_pause *p, int err, double now, long open)
{
    switch (err) {
    case EAGAIN:
        return AS_ACCEPT_DONE;
    case EINTR:
    case ECONNABORTED:
        return AS_ACCEPT_AGAIN;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        p->failures++;
        if (now - p->last_warning >= 1.0) {
            as_warn("accept: %s (%ld connections open, %lu failed accepts): pausing accepts", strerror(err),
                    open, p->failures);
            p->failures = 0;
            p->last_warning = now;
        }
        return AS_ACCEPT_PAUSE_NOW;
    default:
        as_warn("accept: %s", strerror(err));
        return AS_ACCEPT_DONE;
    }
}
