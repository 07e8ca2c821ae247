/* `supctl status`: what the master knows plus what the scoreboard says,
 * as text for people or as one JSON object for programs. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listenq.h"
#include "procfs.h"
#include "sbuf.h"
#include "slot.h"
#include "unavailable.h"

struct wview {
    int id, pid;
    unsigned generation;
    const char *state;
    const char *why;            /* why it is recycling, stopping or being killed; NULL */
    unsigned long long requests;
    long long rss;              /* bytes, -1 unknown */
    struct reqview req[SLOT_MAX_REQUESTS];
    int n_req;                  /* requests in progress */
};

const char *const status_restart_cause[LAST_RESTART_CAUSE + 1] = {
    [END_CRASH] = "crash", [END_TIMEOUT] = "timeout", [END_HEARTBEAT] = "heartbeat",
    [END_MAX_REQUESTS] = "max_requests", [END_MAX_RSS] = "max_rss",
};

const char *status_state_name(const struct worker *w, bool busy)
{
    switch (w->state) {
    case W_LOADING: return "loading";
    case W_STOPPING:
    case W_DUMPING:
    case W_KILLED: return "stopping";
    case W_RECYCLING: return "recycling";   /* serving until its replacement is ready */
    default: return slot_wants_recycle(w) ? "recycling" : busy ? "busy" : "idle";
    }
}

static const char *why_name(const struct worker *w)
{
    if (w->end >= END_CRASH && w->end <= LAST_RESTART_CAUSE)
        return status_restart_cause[w->end];
    if (w->end == END_RETIRED)
        return "retired";   /* reload, scale-down, stop */
    if (w->state == W_SERVING && slot_wants_recycle(w))
        return status_restart_cause[END_MAX_REQUESTS];
    return NULL;
}

static void view(const struct worker *w, uint64_t now_us, struct wview *v)
{
    v->id = w->id;
    v->pid = (int)w->pid;
    v->generation = worker_generation(w);
    v->n_req = slot_requests(w, now_us, v->req, SLOT_MAX_REQUESTS);
    v->state = status_state_name(w, v->n_req > 0);
    v->why = why_name(w);
    v->requests = slot_served(w);
    v->rss = proc_rss(w->pid);
}

/* One line per request in progress; a worker without one gets one line. */
static void text_worker(struct sbuf *b, const struct wview *v)
{
    int k = 0;

    do {
        sbuf_printf(b, "%-4d %-8d %-4u %-9s %-12s %-9llu ", v->id, v->pid, v->generation, v->state,
                    v->why ? v->why : "-", v->requests);
        if (v->rss >= 0)
            sbuf_printf(b, "%-8.1f ", (double)v->rss / (1 << 20));
        else
            sbuf_printf(b, "%-8s ", "-");
        if (k < v->n_req)
            sbuf_printf(b, "%s %s (%.1f s)\n", v->req[k].method, v->req[k].path, v->req[k].age);
        else
            sbuf_printf(b, "-\n");
    } while (++k < v->n_req);
}

static void json_request(struct sbuf *b, const struct reqview *r)
{
    sbuf_printf(b, "{\"method\":");
    sbuf_json_str(b, r->method);
    sbuf_printf(b, ",\"path\":");
    sbuf_json_str(b, r->path);
    sbuf_printf(b, ",\"age\":%.3f,\"request_id\":", r->age);
    sbuf_json_str(b, r->request_id);
    sbuf_printf(b, ",\"thread\":\"0x%016llx\"}", (unsigned long long)r->thread);
}

static void json_worker(struct sbuf *b, const struct wview *v, bool first)
{
    sbuf_printf(b, "%s{\"id\":%d,\"pid\":%d,\"generation\":%u,\"state\":\"%s\",\"reason\":", first ? "" : ",",
                v->id, v->pid, v->generation, v->state);
    if (v->why)
        sbuf_printf(b, "\"%s\"", v->why);
    else
        sbuf_printf(b, "null");
    sbuf_printf(b, ",\"requests\":%llu,\"rss\":%lld,\"request\":", v->requests, v->rss);
    if (v->n_req > 0)
        json_request(b, &v->req[0]);
    else
        sbuf_printf(b, "null");
    /* Every request in progress, oldest first ([supervisor] threads). */
    sbuf_printf(b, ",\"active\":[");
    for (int k = 0; k < v->n_req; k++) {
        sbuf_printf(b, "%s", k ? "," : "");
        json_request(b, &v->req[k]);
    }
    sbuf_printf(b, "]}");
}

/* Connections waiting for a worker on all the listening sockets. */
static long queued(const struct master *m)
{
    long n = 0, q;

    for (int i = 0; i < m->n_listen; i++)
        if ((q = listen_queue(m->listen_fd[i])) > 0)
            n += q;
    return n;
}

static bool failing(const struct master *m)
{
    return m->serving && m->serving->failures > 0;
}

static void text_header(struct sbuf *b, struct master *m, ev_tstamp now)
{
    const struct sup_counters *c = &m->counters;

    sbuf_printf(b, "appstackd pid %d, up %.0f s, generation %u, %d workers (target %d), %llu requests\n",
                (int)getpid(), now - m->started, m->serving->id, gen_count(m->serving, true), m->serving->target,
                (unsigned long long)lifecycle_requests(m));
    for (int i = 0; i < m->n_listen; i++) {
        long q = listen_queue(m->listen_fd[i]);
        sbuf_printf(b, "listen %s (%s), queue ", m->listen_name[i], m->listen_inherited[i] ? "from systemd" : "bound");
        if (q >= 0)
            sbuf_printf(b, "%ld\n", q);
        else
            sbuf_printf(b, "unknown\n");
    }
    sbuf_printf(b, "restarts:");
    for (int i = END_CRASH; i <= LAST_RESTART_CAUSE; i++)
        sbuf_printf(b, " %s %llu", status_restart_cause[i], (unsigned long long)c->restarts[i]);
    sbuf_printf(b, "; reloads: %llu ok, %llu failed\n", (unsigned long long)c->reloads_ok,
                (unsigned long long)c->reloads_failed);
    for (const struct generation *g = m->gens; g; g = g->next)
        if (g->tmpl.state != T_NONE)
            sbuf_printf(b, "template of generation %u: pid %d, %s\n", g->id, (int)g->tmpl.pid,
                        template_state_name(&g->tmpl));
    if (m->pending)
        sbuf_printf(b, "reloading: generation %u, %d of %d workers ready\n", m->pending->id,
                    gen_count(m->pending, true), m->pending->target);
    if (m->stopping)
        sbuf_printf(b, "stopping\n");
    else if (!lifecycle_serves(m))
        sbuf_printf(b, "no worker serves%s\n",
                    unavailable_on() ? ": the app fails to start; appstackd answers 503 until a worker is ready"
                                     : " yet: workers are loading the app");
    if (m->last_failure.text)
        sbuf_printf(b, "last start failure %.0f s ago%s:\n%s%s", now - m->last_failure.when,
                    failing(m) ? " (still failing)" : "", m->last_failure.text,
                    m->last_failure.text[0] && m->last_failure.text[strlen(m->last_failure.text) - 1] == '\n' ? "" : "\n");
    sbuf_printf(b, "\n%-4s %-8s %-4s %-9s %-12s %-9s %-8s %s\n", "ID", "PID", "GEN", "STATE", "WHY", "REQUESTS",
                "RSS(MB)", "REQUEST");
}

static void json_header(struct sbuf *b, struct master *m, ev_tstamp now)
{
    const struct sup_counters *c = &m->counters;
    int n = 0;

    sbuf_printf(b, "{\"pid\":%d,\"uptime\":%.3f,\"generation\":%u,\"workers_ready\":%d,\"target\":%d,\"requests\":%llu,"
                "\"reloading\":%s,\"stopping\":%s,\"serving\":%s,\"answering_503\":%s,\"restarts\":{",
                (int)getpid(), now - m->started, m->serving->id, gen_count(m->serving, true), m->serving->target,
                (unsigned long long)lifecycle_requests(m), m->pending ? "true" : "false",
                m->stopping ? "true" : "false", lifecycle_serves(m) ? "true" : "false",
                unavailable_on() ? "true" : "false");
    for (int i = END_CRASH; i <= LAST_RESTART_CAUSE; i++)
        sbuf_printf(b, "%s\"%s\":%llu", i > END_CRASH ? "," : "", status_restart_cause[i],
                    (unsigned long long)c->restarts[i]);
    sbuf_printf(b, "},\"listen_queue\":%ld", queued(m));
    sbuf_printf(b, ",\"reloads\":{\"ok\":%llu,\"failed\":%llu},\"listen\":[", (unsigned long long)c->reloads_ok,
                (unsigned long long)c->reloads_failed);
    for (int i = 0; i < m->n_listen; i++) {
        long q = listen_queue(m->listen_fd[i]);
        sbuf_printf(b, "%s{\"address\":", i ? "," : "");
        sbuf_json_str(b, m->listen_name[i]);
        sbuf_printf(b, ",\"inherited\":%s,\"queue\":", m->listen_inherited[i] ? "true" : "false");
        if (q >= 0)
            sbuf_printf(b, "%ld}", q);
        else
            sbuf_printf(b, "null}");
    }
    sbuf_printf(b, "],\"last_failure\":");
    if (m->last_failure.text) {
        sbuf_printf(b, "{\"age\":%.3f,\"failing\":%s,\"text\":", now - m->last_failure.when,
                    failing(m) ? "true" : "false");
        sbuf_json_str(b, m->last_failure.text);
        sbuf_printf(b, "}");
    } else {
        sbuf_printf(b, "null");
    }
    sbuf_printf(b, ",\"templates\":[");
    for (const struct generation *g = m->gens; g; g = g->next)
        if (g->tmpl.state != T_NONE)
            sbuf_printf(b, "%s{\"generation\":%u,\"pid\":%d,\"state\":\"%s\"}", n++ ? "," : "", g->id,
                        (int)g->tmpl.pid, template_state_name(&g->tmpl));
    sbuf_printf(b, "],\"workers\":[");
}

static int by_id(const void *a, const void *b, void *arg)
{
    const struct worker *w = arg;
    return w[*(const int *)a].id - w[*(const int *)b].id;
}

/* Workers in id order, so that the listing reads like `ps` of a pool. */
char *status_report(struct master *m, bool json)
{
    struct sbuf b = { 0 };
    struct wview v;
    ev_tstamp now = ev_time();
    uint64_t now_us = mono_usec();
    int order[AS_SCOREBOARD_SLOTS], n = 0;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            order[n++] = i;
    qsort_r(order, (size_t)n, sizeof *order, by_id, m->w);
    (json ? json_header : text_header)(&b, m, now);
    for (int k = 0; k < n; k++) {
        view(&m->w[order[k]], now_us, &v);
        if (json)
            json_worker(&b, &v, k == 0);
        else
            text_worker(&b, &v);
    }
    if (json)
        sbuf_printf(&b, "]}\n");
    return sbuf_take(&b);
}

const char *status_last_line(const char *text, char *buf, size_t n)
{
    const char *end = text + strlen(text), *start;

    while (end > text && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    for (start = end; start > text && start[-1] != '\n'; start--)
        ;
    snprintf(buf, n, "%.*s", (int)(end - start), start);
    return buf;
}

/* `top`: the same facts as tab-separated lines for supctl top, which
 * computes the rates from two of them (ctlproto.h). */
char *status_top(struct master *m)
{
    const struct sup_counters *c = &m->counters;
    struct sbuf b = { 0 };
    struct wview v;
    struct proc_sample ps;
    uint64_t now_us = mono_usec();
    int order[AS_SCOREBOARD_SLOTS], n = 0;

    sbuf_printf(&b, "appstackd\t%d\t%.3f\t%.3f\t%u\t%d\t%d\t%llu\t%llu\t%d\t%d\t%ld\t", (int)getpid(),
                ev_time() - m->started, (double)now_us / 1e6, m->serving->id, gen_count(m->serving, true),
                m->serving->target, (unsigned long long)lifecycle_requests(m),
                (unsigned long long)lifecycle_errors(m), m->pending != NULL, m->stopping, queued(m));
    for (int i = END_CRASH; i <= LAST_RESTART_CAUSE; i++)
        sbuf_printf(&b, "%s%s=%llu", i > END_CRASH ? " " : "", status_restart_cause[i],
                    (unsigned long long)c->restarts[i]);
    sbuf_printf(&b, "\t%llu\t%llu\n", (unsigned long long)c->reloads_ok, (unsigned long long)c->reloads_failed);
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE)
            order[n++] = i;
    qsort_r(order, (size_t)n, sizeof *order, by_id, m->w);
    for (int k = 0; k < n; k++) {
        const struct worker *w = &m->w[order[k]];
        bool have = proc_sample(w->pid, &ps);
        view(w, now_us, &v);
        sbuf_printf(&b, "worker\t%d\t%d\t%u\t%s\t%llu\t%llu\t%lld\t%.2f\t", v.id, v.pid, v.generation, v.state,
                    v.requests, (unsigned long long)slot_errors(w), have ? ps.rss : -1LL, have ? ps.cpu : -1.0);
        if (v.n_req)
            sbuf_printf(&b, "%.3f\t%s\t%s\t%s\n", v.req[0].age, v.req[0].method,
                        v.req[0].request_id[0] ? v.req[0].request_id : "-", v.req[0].path);
        else
            sbuf_printf(&b, "-\t-\t-\t-\n");
    }
    return sbuf_take(&b);
}

void status_summary(struct master *m, char *text, size_t n)
{
    char why[160];

    if (failing(m) && m->last_failure.text)
        snprintf(text, n, "%s (%d in a row): %s",
                 lifecycle_serves(m) ? "workers fail to start" : "no worker serves: the app fails to start",
                 m->serving->failures, status_last_line(m->last_failure.text, why, sizeof why));
    else
        snprintf(text, n, "%d workers, generation %u, %llu requests, listen queue %ld%s", gen_count(m->serving, true),
                 m->serving->id, (unsigned long long)lifecycle_requests(m), queued(m),
                 m->pending ? ", reloading" : "");
}

char *status_worker_head(const struct worker *w)
{
    struct sbuf b = { 0 };
    struct wview v;

    view(w, mono_usec(), &v);
    sbuf_printf(&b, "worker %d (pid %d, generation %u, %s", v.id, v.pid, v.generation, v.state);
    for (int k = 0; k < v.n_req; k++)
        sbuf_printf(&b, "%s %s %s for %.1f s", k ? "," : ":", v.req[k].method, v.req[k].path, v.req[k].age);
    sbuf_printf(&b, ")");
    return sbuf_take(&b);
}
