/* The appstackd instances of this host, for supctl status --all: the apps
 * configured in AS_CONFIG_DIR, one per NAME.ini (appstack@NAME units), and
 * the instance-less appstack.ini (appstack.service), each with the control
 * socket its config gives. */
#ifndef APPSTACK_INSTANCES_H
#define APPSTACK_INSTANCES_H

#include <stddef.h>

#include "config.h"

struct instance {
    char name[AS_INSTANCE_MAX + 1];     /* "" for appstack.ini */
    char *config;
    char *control;
};

/* The files of DIR that configure an app ([app] module), by name; each
 * loaded as its instance would load it. Returns how many (0 also when DIR
 * cannot be read; *ERR then says why, else it is NULL). */
size_t instances_list(const char *dir, struct instance **out, const char **err);
void instances_free(struct instance *v, size_t n);

#endif
