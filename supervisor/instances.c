/* The instances of this host (instances.h). */
#include "instances.h"
#include "cfgcheck.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct instance *)a)->name, ((const struct instance *)b)->name);
}

/* NAME.ini -> NAME, "" for appstack.ini; false for other files. */
static bool instance_of(const char *file, char *name, size_t len)
{
    size_t n = strlen(file);

    if (n <= 4 || strcmp(file + n - 4, ".ini") || n - 4 >= len)
        return false;
    memcpy(name, file, n - 4);
    name[n - 4] = '\0';
    if (!strcmp(name, "appstack")) {
        name[0] = '\0';
        return true;
    }
    return as_instance_name_valid(name);
}

size_t instances_list(const char *dir, struct instance **out, const char **err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct instance *v = NULL;
    size_t n = 0;

    *out = NULL;
    *err = NULL;
    if (!d) {
        *err = strerror(errno);
        return 0;
    }
    while ((e = readdir(d))) {
        struct instance in = { .config = NULL };
        struct as_config cfg;

        if (!instance_of(e->d_name, in.name, sizeof in.name))
            continue;
        if (asprintf(&in.config, "%s/%s", dir, e->d_name) < 0)
            break;
        /* Loaded as appstackd -a NAME (or without -a) would load it. */
        as_config_set_instance(in.name[0] ? in.name : NULL);
        sup_config_load_quiet(in.config, &cfg);
        as_config_set_instance(NULL);
        if (!cfg.module || !(in.control = strdup(cfg.control))) {
            as_config_free(&cfg);
            free(in.config);
            continue;       /* no app in it (the proxy's file, say) */
        }
        as_config_free(&cfg);
        struct instance *grown = realloc(v, (n + 1) * sizeof *v);
        if (!grown) {
            free(in.config);
            free(in.control);
            break;
        }
        v = grown;
        v[n++] = in;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, by_name);
    *out = v;
    return n;
}

void instances_free(struct instance *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].config);
        free(v[i].control);
    }
    free(v);
}
