/* Reading the scoreboard (see slot.h). Each field has one writer, the
 * worker; a torn read of method or path only ever reaches a log line. */
#include "slot.h"

#include <stdio.h>
#include <string.h>

#include "master.h"
#include "request_id.h"

struct as_slot *slot_of(const struct worker *w)
{
    return &w->m->sb->slot[worker_slot(w)];
}

void slot_reset(const struct worker *w, pid_t pid)
{
    struct as_slot *s = slot_of(w);

    memset(s, 0, sizeof *s);
    s->state = AS_SLOT_LOADING;
    s->pid = pid;
}

int slot_requests(const struct worker *w, uint64_t now_us, struct reqview *out, int max)
{
    const struct as_slot *s = slot_of(w);
    uint64_t start = s->request_start;

    if (!start || max < 1)
        return 0;
    out->start = start;
    out->age = now_us > start ? (double)(now_us - start) / 1e6 : 0;
    snprintf(out->method, sizeof out->method, "%.*s", (int)sizeof s->method, s->method);
    snprintf(out->path, sizeof out->path, "%.*s", (int)sizeof s->path, s->path);
    snprintf(out->request_id, sizeof out->request_id, "%.*s", (int)sizeof s->request_id, s->request_id);
    /* Read while the worker may be writing the next one: half of each is
     * no ID at all. */
    if (!as_request_id_valid(out->request_id, strlen(out->request_id)))
        out->request_id[0] = '\0';
    return 1;
}

uint64_t slot_served(const struct worker *w)
{
    return slot_of(w)->requests;
}

uint64_t slot_errors(const struct worker *w)
{
    return slot_of(w)->errors;
}

bool slot_wants_recycle(const struct worker *w)
{
    return slot_of(w)->state == AS_SLOT_RECYCLE;
}

bool slot_waits_on_sockets(const struct worker *w)
{
    const struct as_slot *s = slot_of(w);

    return s->state == AS_SLOT_IDLE || (s->state == AS_SLOT_RECYCLE && !s->request_start);
}

uint64_t slot_last_turn(const struct worker *w)
{
    const struct as_slot *s = slot_of(w);
    uint64_t hb = s->heartbeat, start = s->request_start;

    /* One request at a time: the loop does not turn while it runs; the
     * request's own timeout judges it. */
    return start > hb ? start : hb;
}
