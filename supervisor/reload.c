/* What a reload reads: the whole config file again. A config error stops
 * the reload before any worker starts; settings that only a restart can
 * change keep their values and are named in the reply (lifecycle.c runs
 * the rest of the reload). */
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
        free(m->reload_note);
        m->reload_note = sbuf_take(&b);
    }
}

/* Takes NEXT as the config; the fixed settings keep their old values.
 * *WORKERS: the new count when `workers` changed in the file, else 0. */
static bool adopt_config(struct master *m, struct as_config *next, int *workers)
{
    struct sup_creds creds;
    struct as_strlist keep_listen = m->cfg.listen;
    char *keep_control = m->cfg.control;

    if (!sup_resolve_creds(next, &creds))
        return false;   /* cannot happen: sup_config_load checked them */
    note_fixed_settings(m, next);
    *workers = next->workers != m->cfg.workers ? next->workers : 0;
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

bool reload_config(struct master *m, char **errors, int *workers)
{
    struct as_config next;

    *errors = NULL;
    *workers = 0;
    if (sup_config_load(m->config_path, &next, errors) || !adopt_config(m, &next, workers)) {
        as_config_free(&next);
        return false;
    }
    as_log_set_format(m->cfg.log_format);
    return true;
}
