/* Graceful reload: re-read the config, start a whole new generation, and
 * only once every one of its workers has loaded the app tell the old
 * generation to finish its requests and exit. If the new generation cannot
 * load the app it is discarded and the old one keeps serving. */
#include "master.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgcheck.h"
#include "log.h"
#include "sbuf.h"

static bool same_list(const struct as_strlist *a, const struct as_strlist *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]))
            return false;
    return true;
}

static void finish(struct master *m, bool ok)
{
    m->reload.active = false;
    if (m->first_ready)
        notify_ready();     /* also after a failure: systemd must leave "reloading" */
    control_reload_done(m, ok);
    free(m->reload.error);
    free(m->reload.note);
    m->reload.error = m->reload.note = NULL;
    workers_maintain(m);
    workers_send_status(m);
    if (m->reload.again) {
        m->reload.again = false;
        control_reload_next(m);
        reload_start(m);
    }
}

static void fail(struct master *m, const char *why)
{
    char *line;

    if (!m->reload.error)
        m->reload.error = strdup(why);
    line = strrchr(why, '\n');
    as_err("reload failed, generation %u keeps serving: %s", m->generation, line && line[1] ? line + 1 : why);
    finish(m, false);
}

/* Things a reload cannot change: say so rather than ignore them silently. */
static void note_fixed_settings(struct master *m, const struct as_config *next)
{
    struct sbuf b = { 0 };

    if (!same_list(&m->cfg.listen, &next->listen))
        sbuf_printf(&b, "listen changed in the config: the sockets stay as they are until appstackd restarts\n");
    if (strcmp(m->cfg.control, next->control))
        sbuf_printf(&b, "control changed in the config: the control socket stays at %s until appstackd restarts\n",
                    m->cfg.control);
    if (b.len) {
        as_warn("%s", b.s);
        m->reload.note = sbuf_take(&b);
    }
}

/* Takes NEXT as the config; the fixed settings keep their old values. */
static bool adopt_config(struct master *m, struct as_config *next)
{
    struct sup_creds creds;
    struct as_strlist keep_listen = m->cfg.listen;
    char *keep_control = m->cfg.control;

    if (!sup_resolve_creds(next, &creds))
        return false;   /* cannot happen: sup_config_load checked them */
    note_fixed_settings(m, next);
    if (next->workers != m->cfg.workers)
        m->target = next->workers;  /* else a scale made at run time stays */
    m->cfg.listen = next->listen;
    m->cfg.control = next->control;
    next->listen = keep_listen;
    next->control = keep_control;
    as_config_free(&m->cfg);
    m->cfg = *next;
    free(m->groups);
    m->uid = creds.uid;
    m->gid = creds.gid;
    m->groups = creds.groups;
    m->n_groups = creds.n_groups;
    return true;
}

void reload_start(struct master *m)
{
    struct as_config next;
    char *errors = NULL;

    if (m->reload.active) {
        /* New code may have landed since the running reload read it. */
        if (m->reload.handover)
            m->reload.again = true;
        return;
    }
    if (m->stopping)
        return;
    as_notice("reloading: reading %s", m->config_path);
    m->reload.active = true;
    if (m->first_ready)
        notify_reloading(); /* before the first READY=1 systemd is still starting us */
    if (sup_config_load(m->config_path, &next, &errors) || !adopt_config(m, &next)) {
        as_config_free(&next);
        m->reload.error = errors ? errors : strdup("invalid configuration");
        fail(m, m->reload.error);
        return;
    }
    m->reload.generation = ++m->last_generation;
    m->reload.deadline = ev_now(m->loop) + load_timeout(m);
    as_notice("reloading: starting generation %u (%d workers)", m->reload.generation, m->target);
    for (int i = 0; i < m->target; i++)
        if (!spawn_worker(m, m->reload.generation)) {
            reload_worker_failed(m, NULL, "cannot start the workers of the new generation (see the log)");
            return;
        }
    workers_send_status(m);
}

static void commit(struct master *m)
{
    int old = 0;

    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        struct worker *w = &m->w[i];
        if (w->generation != m->reload.generation && (w->state == W_LOADING || w->state == W_READY)) {
            worker_release(w);
            old++;
        }
    }
    as_notice("reloaded: generation %u serves with %d workers; %d old workers finish their requests",
              m->reload.generation, m->target, old);
    m->generation = m->reload.generation;
    m->fail.count = 0;
    m->first_ready = true;
    m->reload.handover = true;
    m->reload.handover_deadline = ev_now(m->loop) + SUP_HANDOVER_WAIT;
    reload_check_handover(m);
}

static bool waits_on_sockets(const struct as_slot *s)
{
    return s->state == AS_SLOT_IDLE || (s->state == AS_SLOT_RECYCLE && !s->request_start);
}

/* An old worker that is idle may still be waiting on the listening sockets,
 * and a connection made then would meet the old code. `supctl reload`
 * returns once every old worker is in a request (it will not wait on the
 * sockets again), has left them (STOPPING) or is gone: from then on every
 * new connection reaches the new code. */
void reload_check_handover(struct master *m)
{
    if (!m->reload.active || !m->reload.handover)
        return;
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++) {
        const struct worker *w = &m->w[i];
        if (w->state != W_FREE && w->generation != m->generation && !w->killed &&
            waits_on_sockets(&m->sb->slot[i]) && ev_now(m->loop) < m->reload.handover_deadline)
            return;
    }
    m->reload.handover = false;
    finish(m, true);
}

void reload_worker_ready(struct master *m, struct worker *w)
{
    (void)w;
    if (m->reload.active && workers_count(m, m->reload.generation, true) >= m->target)
        commit(m);
}

void reload_worker_failed(struct master *m, struct worker *w, const char *why)
{
    if (!m->reload.active || (w && w->generation != m->reload.generation))
        return;
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (m->w[i].generation == m->reload.generation && m->w[i].state != W_FREE)
            worker_release(&m->w[i]);
    fail(m, why);
}

void reload_check_deadline(struct master *m)
{
    char why[128];

    if (!m->reload.active || m->reload.handover || ev_now(m->loop) <= m->reload.deadline)
        return;
    snprintf(why, sizeof why, "the new generation did not load the app within %g s", load_timeout(m));
    reload_worker_failed(m, NULL, why);
}
