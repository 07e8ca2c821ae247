/* Reading the scoreboard (see slot.h). Each field has one writer, the
 * worker; a torn read of method or path only ever reaches a log line. */
#include "slot.h"

#include <stdio.h>
#include <stdlib.h>
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

static int older_first(const void *a, const void *b)
{
    const struct reqview *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

int slot_requests(const struct worker *w, uint64_t now_us, struct reqview *out, int max)
{
    const struct as_slot *s = slot_of(w);
    struct reqview all[AS_MAX_THREADS];
    uint32_t threads = s->threads;
    int n = 0;

    if (threads < 1)
        threads = 1;
    if (threads > AS_MAX_THREADS)
        threads = AS_MAX_THREADS;
    for (uint32_t i = 0; i < threads; i++) {
        const struct as_req *r = &s->req[i];
        uint64_t start = r->start;
        if (!start)
            continue;
        all[n].start = start;
        all[n].age = now_us > start ? (double)(now_us - start) / 1e6 : 0;
        all[n].thread = r->thread;
        snprintf(all[n].method, sizeof all[n].method, "%.*s", (int)sizeof r->method, r->method);
        snprintf(all[n].path, sizeof all[n].path, "%.*s", (int)sizeof r->path, r->path);
        snprintf(all[n].request_id, sizeof all[n].request_id, "%.*s", (int)sizeof r->request_id, r->request_id);
        /* Read while the worker may be writing the next one: half of each
         * is no ID at all. */
        if (!as_request_id_valid(all[n].request_id, strlen(all[n].request_id)))
            all[n].request_id[0] = '\0';
        n++;
    }
    if (n > 1)
        qsort(all, (size_t)n, sizeof *all, older_first);
    if (n > max)
        n = max;
    memcpy(out, all, sizeof *all * (size_t)(n > 0 ? n : 0));
    return n;
}

/* The newest request's start, 0 when none runs. */
static uint64_t newest_start(const struct as_slot *s)
{
    uint32_t threads = s->threads < 1 ? 1 : s->threads > AS_MAX_THREADS ? AS_MAX_THREADS : s->threads;
    uint64_t newest = 0;

    for (uint32_t i = 0; i < threads; i++) {
        uint64_t start = s->req[i].start;
        if (start > newest)
            newest = start;
    }
    return newest;
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

    /* Request threads leave the loop free: it takes connections whatever
     * they do, until it stops. */
    if (s->threads > 1)
        return s->state != AS_SLOT_STOPPING;
    return s->state == AS_SLOT_IDLE || (s->state == AS_SLOT_RECYCLE && !newest_start(s));
}

uint64_t slot_last_turn(const struct worker *w)
{
    const struct as_slot *s = slot_of(w);
    uint64_t hb = s->heartbeat, start = newest_start(s);

    /* With one thread the loop does not turn while a request runs: the
     * request's own timeout judges it. With several, a request that
     * started later than the last turn shows the loop turned then. */
    return start > hb ? start : hb;
}
