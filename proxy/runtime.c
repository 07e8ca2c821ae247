/* The reloadable part of the proxy: the config, its locations with their
 * alias directories opened, and the upstreams. HUP builds a new one and
 * swaps it in; requests in flight finish on the one they started with. */
#include "proxy.h"
#include "site.h"
#include "tls.h"
#include "upstream.h"
#include "limit.h"
#include "acme.h"
#include "xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* (Re)opens the alias directory of a prefix location; quiet on failure. */
static void open_root(struct location_rt *l)
{
    struct stat st;
    int fd = open(l->alias, O_PATH | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0 && fstat(fd, &st) < 0) {
        close(fd);
        fd = -1;
    }
    if (l->root_fd >= 0)
        close(l->root_fd);
    l->root_fd = fd;
    if (fd >= 0) {
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
}

/* A deploy may swap the directory behind an alias (symlink flip, rename):
 * follow it within a second without a reload. */
void runtime_revalidate(struct runtime *rt)
{
    struct stat st;

    for (size_t i = 0; i <= rt->n_locs; i++) {
        struct location_rt *l = i < rt->n_locs ? &rt->locs[i] : &rt->acme;
        if (l->sp.exact || !l->alias)
            continue;
        if (stat(l->alias, &st) < 0 || !S_ISDIR(st.st_mode)) {
            if (l->root_fd >= 0) {
                close(l->root_fd);
                l->root_fd = -1;
            }
        } else if (l->root_fd < 0 || st.st_dev != l->dev || st.st_ino != l->ino) {
            open_root(l);
        }
    }
}

static void add_locations(struct runtime *rt, const struct as_location *locs, size_t n, bool warn)
{
    const struct as_config *cfg = &rt->cfg;

    for (size_t k = 0; k < n; k++) {
        size_t i = rt->n_locs++;
        struct location_rt *l = &rt->locs[i];
        const struct as_location *c = &locs[k];
        l->sp.prefix = c->prefix;
        l->sp.prefix_len = strlen(c->prefix);
        l->sp.exact = c->exact;
        l->alias = c->alias;
        l->expires = c->expires;
        l->internal = c->internal;
        l->limit_cfg = &c->limit;
        l->root_fd = -1;
        if (!c->exact && l->alias)
            open_root(l);
        if (warn && !c->exact && l->alias && l->root_fd < 0)
            as_warn("%s:%d: alias %s: %s (serving 404 until it appears)", cfg->path, c->line, c->alias,
                    strerror(errno));
        rt->sp[i] = l->sp;
    }
}

/* The default site's locations, then each site's (sites_build slices them). */
static void build_locations(struct runtime *rt, bool warn)
{
    const struct as_config *cfg = &rt->cfg;
    size_t n = cfg->n_locations;

    for (size_t i = 0; i < cfg->n_sites; i++)
        n += cfg->sites[i].n_locations;
    rt->locs = as_xcalloc(n, sizeof *rt->locs);
    rt->sp = as_xcalloc(n, sizeof *rt->sp);
    add_locations(rt, cfg->locations, cfg->n_locations, warn);
    for (size_t i = 0; i < cfg->n_sites; i++)
        add_locations(rt, cfg->sites[i].locations, cfg->sites[i].n_locations, warn);
}

static bool check_addresses(const struct runtime *rt, const struct as_strlist *names)
{
    struct as_addr addr;
    char err[256];
    bool ok = true;

    for (size_t i = 0; i < names->n; i++) {
        if (!as_addr_parse(names->v[i], &addr, err, sizeof err)) {
            as_err("%s:%d: upstream: %s", rt->cfg.path, names->line[i], err);
            ok = false;
        }
    }
    return ok;
}

/* Every site's upstream addresses are valid (sites_build makes the
 * balancers over them). */
static bool build_upstreams(struct runtime *rt)
{
    const struct as_config *cfg = &rt->cfg;
    bool ok = check_addresses(rt, &cfg->upstream);

    for (size_t i = 0; i < cfg->n_sites; i++)
        ok = check_addresses(rt, &cfg->sites[i].upstream) && ok;
    return ok;
}

static void set_limits(struct runtime *rt)
{
    const struct as_config *c = &rt->cfg;

    rt->limits.max_request_line = (size_t)c->limit_request_line;
    rt->limits.max_fields = (size_t)c->limit_request_fields;
    if (rt->limits.max_fields > AS_HTTP_MAX_HEADERS_HARD)    /* what the parser would clamp to */
        rt->limits.max_fields = AS_HTTP_MAX_HEADERS_HARD;
    rt->limits.max_field_size = (size_t)c->limit_request_field_size;
    rt->limits.max_header_bytes = AS_HTTP_DEFAULT_HEADER_BYTES;    /* the workers' too */
    /* The parser checks the largest any site allows; the site's own limit
     * applies once its Host is read (exchange_head_done). */
    rt->limits.max_body = c->client_max_body_size;
    for (size_t i = 0; i < c->n_sites && rt->limits.max_body; i++)
        if (!c->sites[i].client_max_body_size || c->sites[i].client_max_body_size > rt->limits.max_body)
            rt->limits.max_body = c->sites[i].client_max_body_size;
}

/* [proxy] real_ip_from, validated by the config loader: one network per
 * token, several per line. */
static void build_fronts(struct runtime *rt)
{
    const struct as_strlist *l = &rt->cfg.real_ip_from;

    for (size_t i = 0; i < l->n; i++) {
        char *copy = as_xstrdup(l->v[i]), *save = NULL;
        for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            rt->fronts = as_xrealloc(rt->fronts, (rt->n_fronts + 1) * sizeof *rt->fronts);
            if (as_net_parse(t, &rt->fronts[rt->n_fronts]))
                rt->n_fronts++;
        }
        free(copy);
    }
}

static void runtime_free(struct runtime *rt)
{
    if (rt->acme.root_fd >= 0)
        close(rt->acme.root_fd);
    free(rt->acme.alias);
    tls_rt_free(rt->tls);
    free(rt->hsts);
    for (size_t i = 0; i < rt->n_locs; i++)
        if (rt->locs[i].root_fd >= 0)
            close(rt->locs[i].root_fd);
    free(rt->locs);
    free(rt->sp);
    for (size_t i = 0; i < rt->n_sites; i++)
        balancer_free(rt->sites[i].bal);
    limits_free(rt);
    sites_free(rt);
    free(rt->fronts);
    as_config_free(&rt->cfg);
    free(rt);
}

static bool has_tls_listen(const struct as_config *cfg)
{
    for (size_t i = 0; i < cfg->proxy_listen.n; i++)
        if (cfg->proxy_listen_flags[i] & AS_LISTEN_SSL)
            return true;
    return false;
}

static int own_listen(const struct as_config *cfg, const struct as_strlist *ups)
{
    int errors = 0;

    for (size_t i = 0; i < ups->n; i++) {
        for (size_t j = 0; j < cfg->proxy_listen.n; j++) {
            if (!strcmp(ups->v[i], cfg->proxy_listen.v[j])) {
                fprintf(stderr, "%s:%d: upstream %s is the proxy's own listen address\n", cfg->path,
                        ups->line[i], ups->v[i]);
                errors++;
            }
        }
    }
    return errors;
}

static int metrics_upstream(const struct as_config *cfg, const struct as_strlist *ups)
{
    int errors = 0;

    for (size_t i = 0; cfg->proxy_metrics && i < ups->n; i++) {
        if (!strcmp(cfg->proxy_metrics, ups->v[i])) {
            fprintf(stderr, "%s:%d: metrics: %s is an upstream\n", cfg->path, cfg->proxy_metrics_line,
                    cfg->proxy_metrics);
            errors++;
        }
    }
    return errors;
}

/* What the proxy needs beyond a syntactically valid file. */
static int proxy_errors(const struct as_config *cfg)
{
    int errors = 0, line = cfg->proxy_line;

    if (!cfg->proxy_listen.n) {
        fprintf(stderr, "%s:%d: [proxy] needs at least one \"listen\"\n", cfg->path, line);
        errors++;
    }
    if (!cfg->upstream.n && !cfg->n_sites) {
        fprintf(stderr, "%s:%d: [proxy] needs at least one \"upstream\"\n", cfg->path, line);
        errors++;
    }
    if (!cfg->upstream.n && cfg->n_locations) {
        /* Without an upstream there is no default site to serve them. */
        fprintf(stderr, "%s:%d: a [location] before any [site] is the default site's, which needs an "
                "\"upstream\" in [proxy]\n", cfg->path, cfg->locations[0].line);
        errors++;
    }
    if (cfg->n_tls_pairs && !has_tls_listen(cfg))
        fprintf(stderr, "%s:%d: warning: no listen has \"ssl\": the certificates are not used\n", cfg->path,
                cfg->tls_pairs[0].cert_line);
    for (size_t i = 0; i < cfg->proxy_listen.n; i++)
        if ((cfg->proxy_listen_flags[i] & AS_LISTEN_PROXY_PROTOCOL) && !cfg->real_ip_from.n)
            fprintf(stderr, "%s:%d: warning: proxy_protocol without real_ip_from: the PROXY headers are read "
                    "and their addresses ignored\n", cfg->path, cfg->proxy_listen.line[i]);
    if (cfg->proxy_listen.n > MAX_LISTEN) {
        fprintf(stderr, "%s:%d: [proxy] has more than %d listen addresses\n", cfg->path,
                cfg->proxy_listen.line[MAX_LISTEN], MAX_LISTEN);
        errors++;
    }
    if (cfg->proxy_buffer_size < 1024 || cfg->proxy_buffer_size > (64u << 20)) {
        fprintf(stderr, "%s:%d: proxy_buffer_size must be from 1k to 64m\n", cfg->path, line);
        errors++;
    }
    for (size_t j = 0; cfg->proxy_metrics && j < cfg->proxy_listen.n; j++) {
        if (!strcmp(cfg->proxy_metrics, cfg->proxy_listen.v[j])) {
            fprintf(stderr, "%s:%d: metrics: %s is a listen address of the proxy; the metrics need one of their own\n",
                    cfg->path, cfg->proxy_metrics_line, cfg->proxy_metrics);
            errors++;
        }
    }
    errors += metrics_upstream(cfg, &cfg->upstream);
    errors += own_listen(cfg, &cfg->upstream);
    errors += acme_config_errors(cfg);
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct as_site *site = &cfg->sites[i];
        if (!site->upstream.n) {
            fprintf(stderr, "%s:%d: [site %s] needs at least one \"upstream\"\n", cfg->path, site->line,
                    site->name);
            errors++;
        }
        errors += own_listen(cfg, &site->upstream);
        errors += metrics_upstream(cfg, &site->upstream);
    }
    return errors;
}

/* The HSTS header and the port redirect_https sends clients to. The
 * certificates are runtime_load_tls's: not in the master. */
static bool build_tls(struct runtime *rt)
{
    struct as_config *c = &rt->cfg;
    char hsts[80];

    rt->https_port = 443;
    for (size_t i = 0; i < c->proxy_listen.n; i++) {
        const char *colon = strrchr(c->proxy_listen.v[i], ':');
        if ((c->proxy_listen_flags[i] & AS_LISTEN_SSL) && colon) {
            rt->https_port = atoi(colon + 1);
            break;
        }
    }
    if (c->hsts > 0) {
        rt->hsts_len = (size_t)snprintf(hsts, sizeof hsts, "Strict-Transport-Security: max-age=%.0f\r\n", c->hsts);
        rt->hsts = strdup(hsts);
        if (!rt->hsts)
            return false;
    }
    return true;
}

bool runtime_wants_tls(const struct runtime *rt)
{
    return has_tls_listen(&rt->cfg);
}

/* Certificates when a listen wants TLS (unused pairs are not loaded): in
 * a serving process, or in the master's short-lived check (tls_check.c),
 * never in the master itself. */
bool runtime_load_tls(struct runtime *rt)
{
    struct as_config *c = &rt->cfg;

    if (rt->tls || !has_tls_listen(c))
        return true;
    if (c->acme && !acme_add_pair(c, false))
        return false;
    rt->tls = tls_rt_load(c);
    return rt->tls != NULL;
}

/* acme = on: /.well-known/acme-challenge/ from the state directory, for
 * every site (exchange_dispatch), quiet while the directory is missing. */
static void build_acme(struct runtime *rt)
{
    struct acme_paths p;

    rt->acme.root_fd = -1;
    if (!rt->cfg.acme || !acme_paths(&rt->cfg, &p))
        return;
    rt->acme.alias = as_xstrdup(p.challenges);
    rt->acme.sp.prefix = ACME_CHALLENGE_PREFIX;
    rt->acme.sp.prefix_len = strlen(ACME_CHALLENGE_PREFIX);
    rt->acme.expires = -1;
    open_root(&rt->acme);
}

struct runtime *runtime_load(const char *path, bool warn)
{
    struct runtime *rt = as_xcalloc(1, sizeof *rt);

    rt->refs = 1;
    if (as_config_load(path, &rt->cfg) || proxy_errors(&rt->cfg)) {
        as_config_free(&rt->cfg);
        free(rt);
        return NULL;
    }
    set_limits(rt);
    build_fronts(rt);
    build_acme(rt);
    build_locations(rt, warn);
    if (!build_upstreams(rt) || !build_tls(rt)) {
        runtime_free(rt);
        return NULL;
    }
    sites_build(rt);
    for (size_t i = 0; i < rt->n_sites; i++) {
        const struct as_site *cs = rt->sites[i].cfg;
        rt->sites[i].bal = balancer_build(cs ? &cs->upstream : &rt->cfg.upstream);
    }
    limits_build(rt);
    return rt;
}

void runtime_retire(struct runtime *old, struct runtime *rt)
{
    for (size_t i = 0; i < old->n_sites; i++) {
        struct site *heir = NULL;
        for (size_t j = 0; j < rt->n_sites && !heir; j++)
            if (!strcmp(rt->sites[j].name, old->sites[i].name))
                heir = &rt->sites[j];
        balancer_retire(old->sites[i].bal, heir ? heir->bal : NULL);
    }
}

struct runtime *runtime_get(struct runtime *rt)
{
    rt->refs++;
    return rt;
}

void runtime_put(struct runtime *rt)
{
    if (rt && --rt->refs == 0)
        runtime_free(rt);
}

/* collectstatic often runs after the config is installed: a missing
 * alias is a warning, served as 404 until it appears. */
static void alias_warnings(const char *path, const struct as_location *locs, size_t n)
{
    struct stat st;

    for (size_t i = 0; i < n; i++) {
        const struct as_location *l = &locs[i];
        if (!l->alias)
            continue;
        if (stat(l->alias, &st) < 0)
            fprintf(stderr, "%s:%d: warning: alias %s: %s\n", path, l->line, l->alias, strerror(errno));
        else if (!l->exact && !S_ISDIR(st.st_mode))
            fprintf(stderr, "%s:%d: warning: alias %s of a prefix location is not a directory\n", path,
                    l->line, l->alias);
    }
}

int proxy_check(const char *path)
{
    struct as_config cfg;
    int errors = as_config_load(path, &cfg);

    errors += proxy_errors(&cfg);
    if (cfg.acme)
        acme_add_pair(&cfg, true);      /* the issued pair, when there is one; else the placeholder, made at start */
    if (has_tls_listen(&cfg) && (cfg.n_tls_pairs || !cfg.acme)) {
        struct tls_rt *t = tls_rt_load(&cfg);
        if (!t)
            errors++;
        tls_rt_free(t);
    }
    alias_warnings(path, cfg.locations, cfg.n_locations);
    for (size_t i = 0; i < cfg.n_sites; i++)
        alias_warnings(path, cfg.sites[i].locations, cfg.sites[i].n_locations);
    as_config_free(&cfg);
    if (errors)
        return 1;
    printf("%s: configuration ok\n", path);
    return 0;
}
