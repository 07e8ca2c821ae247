/* libFuzzer target: the choice of a site by Host (proxy/site.c), against a
 * plain reference written from appstack.ini(5)'s rules.
 *
 * The input's first line is a list of server names (blank-separated,
 * "*.x" for wildcards, "|" between sites), the rest is the Host value.
 * Names that config.c would refuse are dropped, as the loader would. The
 * table lookup and the reference (compare against every name) must agree
 * on the site, for any bytes in the Host, and so must a connection's
 * memo of its last Host (site_for_host_memo).
 *
 * Built by `make fuzz`; replayed by `make check`. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "site.h"

#define MAX_SITES 8
#define MAX_NAMES 32

static bool name_ok(const char *s)
{
    const char *p = s[0] == '*' && s[1] == '.' ? s + 2 : s;

    if (!*p || strlen(p) > 253 || *p == '.' || p[strlen(p) - 1] == '.' || strstr(p, ".."))
        return false;
    for (; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

/* The rules as written: the host without its port and one trailing dot,
 * in lower case; an exact name, else the longest wildcard suffix. */
static struct site *reference(struct runtime *rt, const char *host, size_t len)
{
    char h[512];
    size_t n = 0, best = 0;
    struct site *found = NULL;

    if (len && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        n = close ? (size_t)(close - host) + 1 : len;
    } else {
        while (n < len && host[n] != ':')
            n++;
    }
    if (n && host[n - 1] == '.')
        n--;
    if (!n || n > 255)
        return rt->default_site;
    for (size_t i = 0; i < n; i++)
        h[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
    for (size_t s = 0; s < rt->n_sites; s++) {
        const struct as_site *cs = rt->sites[s].cfg;
        for (size_t j = 0; cs && j < cs->server_name.n; j++) {
            const char *name = cs->server_name.v[j];
            size_t l = strlen(name);
            if (name[0] != '*') {
                if (l == n && !memcmp(name, h, n) && h[0] != '.')
                    return &rt->sites[s];
            } else if (l - 1 < n && !memcmp(name + 1, h + n - (l - 1), l - 1) && l - 1 > best
                       && n - (l - 1) > 0) {
                best = l - 1;
                found = &rt->sites[s];
            }
        }
    }
    return found ? found : rt->default_site;
}

static char *up_names[] = { (char *)"127.0.0.1:1" };
static int up_lines[] = { 1 };
static struct location_rt no_locs[1];    /* the sites have none, as runtime.c would make it */
static struct sp_location no_sp[1];

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static char *names[MAX_NAMES];
    static struct site_memo memo;
    struct site *want;
    static int line[MAX_NAMES];
    struct as_site cs[MAX_SITES];
    struct runtime rt;
    const unsigned char *nl = memchr(data, '\n', size);
    char spec[1024], *save = NULL, *tok;
    size_t n_sites = 1, n_names = 0, speclen;
    const char *host;
    size_t hostlen;

    if (!nl || (speclen = (size_t)(nl - data)) >= sizeof spec)
        return 0;
    memcpy(spec, data, speclen);
    spec[speclen] = '\0';
    host = (const char *)nl + 1;
    hostlen = size - speclen - 1;

    memset(cs, 0, sizeof cs);
    memset(&rt, 0, sizeof rt);
    rt.locs = no_locs;
    rt.sp = no_sp;
    for (tok = strtok_r(spec, " \t", &save); tok && n_names < MAX_NAMES; tok = strtok_r(NULL, " \t", &save)) {
        if (!strcmp(tok, "|")) {
            n_sites += n_sites < MAX_SITES;
            continue;
        }
        for (char *p = tok; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!name_ok(tok))
            continue;
        bool dup = false;
        for (size_t i = 0; i < n_names; i++)
            dup |= !strcmp(names[i], tok);
        if (dup)
            continue;   /* config.c refuses a name in two places */
        names[n_names] = tok;
        line[n_names] = 1;
        struct as_strlist *l = &cs[n_sites - 1].server_name;
        if (!l->v) {
            l->v = &names[n_names];
            l->line = &line[n_names];
        }
        l->n++;
        n_names++;      /* a site's names are contiguous in names[]: "|" starts the next site */
    }
    rt.cfg.sites = cs;
    rt.cfg.n_sites = n_sites;
    for (size_t i = 0; i < n_sites; i++)
        cs[i].name = (char *)"s";
    /* A spec starting with "!" has a default site too ([proxy]'s upstream). */
    if (speclen && data[0] == '!') {
        rt.cfg.upstream = (struct as_strlist){ up_names, up_lines, 1 };
    }
    sites_build(&rt);
    want = reference(&rt, host, hostlen);
    if (site_for_host(&rt, host, hostlen) != want)
        abort();
    /* A connection's memo (kept from input to input: each input's rt is at
     * the same address, but of another generation), missed then hit. */
    if (site_for_host_memo(&rt, &memo, host, hostlen) != want || site_for_host_memo(&rt, &memo, host, hostlen) != want)
        abort();
    sites_free(&rt);
    return 0;
}
