/* `supctl status`: what the master knows plus what the scoreboard says,
 * as text for people or as one JSON object for programs. */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbuf.h"

struct wview {
    int id, pid;
    unsigned generation;
    const char *state;
    unsigned long long requests;
    long long rss;              /* bytes, -1 unknown */
    char method[17], path[209];
    double age;                 /* s in the current request, -1 idle */
};

static long long rss_of(int pid)
{
    char path[64];
    long long size, resident;
    FILE *f;
    int n;

    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? resident * sysconf(_SC_PAGESIZE) : -1;
}

static const char *state_name(const struct worker *w, const struct as_slot *s)
{
    if (w->state == W_STOPPING)
        return "stopping";
    if (w->state == W_LOADING)
        return "loading";
    if (s->state == AS_SLOT_RECYCLE)
        return "recycling";     /* serving until its replacement is ready */
    return s->request_start ? "busy" : "idle";
}

static void view(const struct worker *w, const struct as_slot *s, uint64_t now_us, struct wview *v)
{
    uint64_t start = s->request_start;

    v->id = w->id;
    v->pid = (int)w->pid;
    v->generation = w->generation;
    v->state = state_name(w, s);
    v->requests = s->requests;
    v->rss = rss_of(v->pid);
    v->age = start && now_us >= start ? (double)(now_us - start) / 1e6 : -1;
    snprintf(v->method, sizeof v->method, "%.*s", (int)sizeof s->method, s->method);
    snprintf(v->path, sizeof v->path, "%.*s", (int)sizeof s->path, s->path);
}

static void text_worker(struct sbuf *b, const struct wview *v)
{
    sbuf_printf(b, "%-4d %-8d %-4u %-9s %-9llu ", v->id, v->pid, v->generation, v->state, v->requests);
    if (v->rss >= 0)
        sbuf_printf(b, "%-8.1f ", (double)v->rss / (1 << 20));
    else
        sbuf_printf(b, "%-8s ", "-");
    if (v->age >= 0)
        sbuf_printf(b, "%s %s (%.1f s)\n", v->method, v->path, v->age);
    else
        sbuf_printf(b, "-\n");
}

static void json_worker(struct sbuf *b, const struct wview *v, bool first)
{
    sbuf_printf(b, "%s{\"id\":%d,\"pid\":%d,\"generation\":%u,\"state\":\"%s\",\"requests\":%llu,\"rss\":%lld,\"request\":",
                first ? "" : ",", v->id, v->pid, v->generation, v->state, v->requests, v->rss);
    if (v->age >= 0) {
        sbuf_printf(b, "{\"method\":");
        sbuf_json_str(b, v->method);
        sbuf_printf(b, ",\"path\":");
        sbuf_json_str(b, v->path);
        sbuf_printf(b, ",\"age\":%.3f}}", v->age);
    } else {
        sbuf_printf(b, "null}");
    }
}

static void text_header(struct sbuf *b, struct master *m, ev_tstamp now)
{
    sbuf_printf(b, "appstackd pid %d, up %.0f s, generation %u, %d workers (target %d), %llu requests\n",
                (int)getpid(), now - m->started, m->generation, workers_count(m, m->generation, true), m->target,
                (unsigned long long)workers_total_requests(m));
    for (int i = 0; i < m->n_listen; i++)
        sbuf_printf(b, "listen %s (%s)\n", m->listen_name[i], m->listen_inherited[i] ? "from systemd" : "bound");
    if (m->reload.active)
        sbuf_printf(b, "reloading: generation %u, %d of %d workers ready\n", m->reload.generation,
                    workers_count(m, m->reload.generation, true), m->target);
    if (m->stopping)
        sbuf_printf(b, "stopping\n");
    if (m->fail.text)
        sbuf_printf(b, "last start failure %.0f s ago%s:\n%s%s", now - m->fail.when,
                    m->fail.count ? " (still failing)" : "", m->fail.text,
                    m->fail.text[0] && m->fail.text[strlen(m->fail.text) - 1] == '\n' ? "" : "\n");
    sbuf_printf(b, "\n%-4s %-8s %-4s %-9s %-9s %-8s %s\n", "ID", "PID", "GEN", "STATE", "REQUESTS", "RSS(MB)",
                "REQUEST");
}

static void json_header(struct sbuf *b, struct master *m, ev_tstamp now)
{
    sbuf_printf(b, "{\"pid\":%d,\"uptime\":%.3f,\"generation\":%u,\"workers_ready\":%d,\"target\":%d,\"requests\":%llu,"
                "\"reloading\":%s,\"stopping\":%s,\"listen\":[",
                (int)getpid(), now - m->started, m->generation, workers_count(m, m->generation, true), m->target,
                (unsigned long long)workers_total_requests(m), m->reload.active ? "true" : "false",
                m->stopping ? "true" : "false");
    for (int i = 0; i < m->n_listen; i++) {
        sbuf_printf(b, "%s{\"address\":", i ? "," : "");
        sbuf_json_str(b, m->listen_name[i]);
        sbuf_printf(b, ",\"inherited\":%s}", m->listen_inherited[i] ? "true" : "false");
    }
    sbuf_printf(b, "],\"last_failure\":");
    if (m->fail.text) {
        sbuf_printf(b, "{\"age\":%.3f,\"failing\":%s,\"text\":", now - m->fail.when, m->fail.count ? "true" : "false");
        sbuf_json_str(b, m->fail.text);
        sbuf_printf(b, "}");
    } else {
        sbuf_printf(b, "null");
    }
    sbuf_printf(b, ",\"workers\":[");
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
        view(&m->w[order[k]], &m->sb->slot[order[k]], now_us, &v);
        if (json)
            json_worker(&b, &v, k == 0);
        else
            text_worker(&b, &v);
    }
    if (json)
        sbuf_printf(&b, "]}\n");
    return sbuf_take(&b);
}
