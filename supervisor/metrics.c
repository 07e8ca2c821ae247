/* appstackd's /metrics and /healthz (metrics = ADDR in [supervisor]): what
 * `supctl status` shows, as Prometheus samples. Everything is read at
 * scrape time from the master's own state and the scoreboard, so the
 * workers and the request path pay nothing for it; a scrape reads
 * /proc/PID/stat once per worker. */
#include "master.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "listenq.h"
#include "log.h"
#include "procfs.h"
#include "slot.h"
#include "status.h"

enum { ST_LOADING, ST_IDLE, ST_BUSY, ST_RECYCLING, ST_STOPPING, N_STATES };
static const char *const state_names[N_STATES] = { "loading", "idle", "busy", "recycling", "stopping" };

static int state_index(const char *name)
{
    for (int i = 0; i < N_STATES; i++)
        if (!strcmp(name, state_names[i]))
            return i;
    return ST_STOPPING;
}

static void pool_text(struct master *m, struct prom *p)
{
    uint64_t now_us = mono_usec();
    int count[N_STATES] = { 0 };
    struct reqview req;
    char labels[256];

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        const struct worker *w = &m->w[i];
        if (w->state != W_FREE)
            count[state_index(status_state_name(w, slot_requests(w, now_us, &req, 1) > 0))]++;
    }
    prom_family(p, "appstack_workers", "gauge", "Worker processes by state (every generation).");
    for (int i = 0; i < N_STATES; i++) {
        snprintf(labels, sizeof labels, "state=\"%s\"", state_names[i]);
        prom_u64(p, "appstack_workers", labels, (uint64_t)count[i]);
    }
    prom_family(p, "appstack_workers_target", "gauge", "Workers the serving generation is kept at (workers, supctl scale).");
    prom_u64(p, "appstack_workers_target", NULL, (uint64_t)lifecycle_target(m));
    prom_family(p, "appstack_generation", "gauge", "Number of the generation that serves (1 at start, +1 per reload).");
    prom_u64(p, "appstack_generation", NULL, m->serving ? m->serving->id : 0);
    prom_family(p, "appstack_reloading", "gauge", "1 while a reload's new generation loads or takes over.");
    prom_u64(p, "appstack_reloading", NULL, m->pending != NULL);
    prom_family(p, "appstack_listen_queue", "gauge",
                "Connections waiting in a listening socket's accept queue for a worker.");
    for (int i = 0; i < m->n_listen; i++) {
        long q = listen_queue(m->listen_fd[i]);
        char esc[200];
        if (q < 0)
            continue;
        prom_escape(m->listen_name[i], esc, sizeof esc);
        snprintf(labels, sizeof labels, "listen=\"%s\"", esc);
        prom_u64(p, "appstack_listen_queue", labels, (uint64_t)q);
    }
}

static void counters_text(struct master *m, struct prom *p)
{
    const struct sup_counters *c = &m->counters;
    char labels[64];

    prom_family(p, "appstack_requests_total", "counter", "Requests served by the workers (all generations).");
    prom_u64(p, "appstack_requests_total", NULL, lifecycle_requests(m));
    prom_family(p, "appstack_request_errors_total", "counter",
                "Requests the workers answered with a 5xx status (the app's own, or 500 for an exception).");
    prom_u64(p, "appstack_request_errors_total", NULL, lifecycle_errors(m));
    prom_family(p, "appstack_worker_restarts_total", "counter",
                "Workers replaced, by cause (a retirement by reload, scale-down or stop is no restart).");
    for (int i = END_CRASH; i <= LAST_RESTART_CAUSE; i++) {
        snprintf(labels, sizeof labels, "cause=\"%s\"", status_restart_cause[i]);
        prom_u64(p, "appstack_worker_restarts_total", labels, c->restarts[i]);
    }
    prom_family(p, "appstack_reloads_total", "counter", "Reloads by result (failed: the old generation served on).");
    prom_u64(p, "appstack_reloads_total", "result=\"ok\"", c->reloads_ok);
    prom_u64(p, "appstack_reloads_total", "result=\"failed\"", c->reloads_failed);
}

/* Per worker: its id (stable across respawns, unlike the pid) labels it. */
static void per_worker_text(struct master *m, struct prom *p)
{
    struct proc_sample ps[AS_SCOREBOARD_SLOTS];
    bool have[AS_SCOREBOARD_SLOTS];
    char labels[64];

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        have[i] = m->w[i].state != W_FREE && m->w[i].pid > 0 && proc_sample(m->w[i].pid, &ps[i]);
    prom_family(p, "appstack_worker_resident_memory_bytes", "gauge", "Resident memory of each worker process.");
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (have[i]) {
            snprintf(labels, sizeof labels, "worker=\"%d\",generation=\"%u\"", m->w[i].id, worker_generation(&m->w[i]));
            prom_u64(p, "appstack_worker_resident_memory_bytes", labels, (uint64_t)ps[i].rss);
        }
    prom_family(p, "appstack_worker_cpu_seconds_total", "counter", "User and system CPU time of each worker process.");
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (have[i]) {
            snprintf(labels, sizeof labels, "worker=\"%d\",generation=\"%u\"", m->w[i].id, worker_generation(&m->w[i]));
            prom_double(p, "appstack_worker_cpu_seconds_total", labels, ps[i].cpu);
        }
    prom_family(p, "appstack_worker_requests_total", "counter", "Requests served by each worker process since it started.");
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].state != W_FREE) {
            snprintf(labels, sizeof labels, "worker=\"%d\",generation=\"%u\"", m->w[i].id, worker_generation(&m->w[i]));
            prom_u64(p, "appstack_worker_requests_total", labels, slot_served(&m->w[i]));
        }
}

static void metrics_text(void *ctx, struct prom *p)
{
    struct master *m = ctx;
    const char *why;

    prom_family(p, "appstack_ready", "gauge", "1 while a generation serves (what /healthz answers 200 for).");
    prom_u64(p, "appstack_ready", NULL, sup_ready(m, &why));
    prom_family(p, "appstack_start_time_seconds", "gauge", "When appstackd started (Unix time).");
    prom_double(p, "appstack_start_time_seconds", NULL, m->started);
    pool_text(m, p);
    counters_text(m, p);
    per_worker_text(m, p);
}

bool sup_ready(struct master *m, const char **why)
{
    if (m->stopping) {
        *why = "appstackd is stopping";
        return false;
    }
    if (!m->serving || m->serving->phase != G_SERVING) {
        *why = "the first generation is loading the app";
        return false;
    }
    if (gen_count(m->serving, true) == 0) {
        *why = "no worker of the serving generation is ready";
        return false;
    }
    return true;
}

static bool ready_cb(void *ctx, const char **why)
{
    return sup_ready(ctx, why);
}

bool sup_metrics_open(struct master *m)
{
    char err[256];

    m->metrics.fd = -1;
    if (!m->cfg.metrics)
        return true;
    m->metrics.metrics = metrics_text;
    m->metrics.ready = ready_cb;
    m->metrics.ctx = m;
    if (!metrics_server_open(&m->metrics, m->loop, m->cfg.metrics, err, sizeof err)) {
        as_err("%s:%d: metrics = %s: %s", m->cfg.path, m->cfg.metrics_line, m->cfg.metrics, err);
        return false;
    }
    as_info("metrics on %s (/metrics, /healthz)", m->cfg.metrics);
    return true;
}

void sup_metrics_close(struct master *m)
{
    metrics_server_close(&m->metrics);
}
