/* Loading the INI file the way appstackd needs it: as_config_load plus the
 * checks only the supervisor makes, with the errors either printed or kept
 * (a reload sends them back to supctl). */
#ifndef APPSTACK_CFGCHECK_H
#define APPSTACK_CFGCHECK_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

/* Loads PATH into CFG and checks it for appstackd. Errors are
 * "FILE:LINE: message" lines: printed to stderr when ERRORS is NULL, else
 * returned in *ERRORS (malloc'ed, NULL when there are none). Returns the
 * number of errors. */
int sup_config_load(const char *path, struct as_config *cfg, char **errors);

/* Only as_config_load, errors discarded: for supctl, which needs nothing but
 * the control socket's path and must not repeat appstackd's complaints. */
int sup_config_load_quiet(const char *path, struct as_config *cfg);

struct sup_creds {
    uid_t uid;          /* (uid_t)-1: keep */
    gid_t gid;          /* (gid_t)-1: keep */
    gid_t *groups;      /* supplementary groups of USER */
    int n_groups;
};

/* Resolves [supervisor] user/group. Prints FILE:LINE errors; false on error. */
bool sup_resolve_creds(const struct as_config *cfg, struct sup_creds *out);

#endif
