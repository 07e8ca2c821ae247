/* libFuzzer target: the INI loader every program shares (common/config.c).
 *
 * The input is written to a memfd and loaded through /proc/self/fd/N, the
 * loader's ordinary path-based entry point. A file without errors must
 * give a configuration the programs can use as is (sane numbers, every
 * location with a prefix and an alias, every site with a name and server
 * names); loading and freeing must never crash or leak, whatever the
 * bytes. The loader's messages go to a private
 * stream (not fd 2, where the sanitizers report).
 *
 * Built by `make fuzz`; replayed by `make check`. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1     /* memfd_create */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int memfd = -1;
static char path[64];

static void setup(void)
{
    memfd = memfd_create("fuzz-config", 0);
    if (memfd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    /* The loader prints every error; thousands of runs a second would
     * drown the fuzzer's own output. */
    stderr = fopen("/dev/null", "w");
    if (!stderr)
        abort();
}

static void check_locations(const struct as_location *locs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct as_location *l = &locs[i];

        if (!l->prefix || l->prefix[0] != '/' || !l->alias || !*l->alias)
            abort();
    }
}

static void check(const struct as_config *c)
{
    size_t i;

    if (c->workers < 1 || c->workers > AS_MAX_WORKERS || c->timeout < 0 || c->graceful_timeout < 0 ||
        c->max_requests < 0)
        abort();
    if (c->module && !c->callable)
        abort();
    check_locations(c->locations, c->n_locations);
    for (i = 0; i < c->n_sites; i++) {
        const struct as_site *s = &c->sites[i];

        if (!s->name || !*s->name || !s->server_name.n)
            abort();
        for (size_t j = 0; j < s->server_name.n; j++)
            if (!s->server_name.v[j][0] || strpbrk(s->server_name.v[j], " \t/"))
                abort();
        check_locations(s->locations, s->n_locations);
    }
    for (i = 0; i < c->listen.n; i++)
        if (!c->listen.v[i] || !*c->listen.v[i])
            abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct as_config cfg;
    int errors;

    if (memfd < 0)
        setup();
    if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    memset(&cfg, 0x5a, sizeof cfg);
    errors = as_config_load(path, &cfg);
    if (errors < 0)
        abort();
    if (errors == 0)
        check(&cfg);
    as_config_free(&cfg);
    return 0;
}
