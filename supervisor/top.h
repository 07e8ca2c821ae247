/* supctl top (top.c) and what it needs from supctl.c. */
#ifndef APPSTACK_SUP_TOP_H
#define APPSTACK_SUP_TOP_H

#include <stdbool.h>
#include <stdio.h>

/* Sends LINE to the control socket at PATH and relays the answer's text to
 * OUT: 0 on OK, 1 on ERR, -1 with WHY when appstackd cannot be reached. */
int supctl_command(const char *path, const char *line, FILE *out, char *why, size_t len);

/* "supctl top [-d SECONDS] [-n FRAMES]": ARGV[0] is "top". Exit code. */
int top_run(const char *path, int argc, char **argv);

#endif
