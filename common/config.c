/* Loads the appstack INI file with inih. The line reader is ours: inih's
 * handler gets no line numbers in Debian's build, and lines longer than
 * inih's buffer would otherwise be split silently. */
#include "config.h"
#include "listen.h"
#include "log.h"
#include "netmask.h"
#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum kind { K_STR, K_LIST, K_INT, K_SIZE, K_DURATION, K_BOOL, K_ADDRS, K_LEVEL, K_HOSTS, K_LISTEN, K_CERT,
             K_CERT_KEY, K_TLS_PROTOCOLS, K_NETS, K_ADDR, K_LOG_FORMAT, K_TYPES, K_RATE, K_WORKERS,
             K_POSITIVE_DURATION, K_PATH_OR_OFF };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    long min, max;          /* K_INT */
};

/* A [site] option; one that [proxy] has too takes [proxy]'s value unless
 * the site gives its own (FROM: its offset in struct as_config). */
struct site_key {
    struct key k;
    size_t from;
};
#define NO_FROM ((size_t)-1)

#define F(field) offsetof(struct as_config, field)

static const struct key app_keys[] = {
    { "module", K_STR, F(module), 0, 0 },
    { "chdir", K_STR, F(chdir), 0, 0 },
    { "virtualenv", K_STR, F(virtualenv), 0, 0 },
    { "pythonpath", K_LIST, F(pythonpath), 0, 0 },
    { "env", K_LIST, F(env), 0, 0 },
    { "script_name", K_STR, F(script_name), 0, 0 },
    { "stderr_level", K_LEVEL, F(stderr_level), 0, 0 },
    { "preload", K_BOOL, F(preload), 0, 0 },
    { NULL, 0, 0, 0, 0 }
};

static const struct key supervisor_keys[] = {
    { "listen", K_ADDRS, F(listen), 0, 0 },
    { "workers", K_INT, F(workers), 1, AS_MAX_WORKERS },
    { "threads", K_INT, F(threads), 1, AS_MAX_THREADS },
    { "timeout", K_DURATION, F(timeout), 0, 0 },
    { "graceful_timeout", K_DURATION, F(graceful_timeout), 0, 0 },
    { "max_requests", K_INT, F(max_requests), 0, 1000000000 },
    { "max_requests_jitter", K_INT, F(max_requests_jitter), 0, 1000000000 },
    { "max_rss", K_SIZE, F(max_rss), 0, 0 },
    { "control", K_STR, F(control), 0, 0 },
    { "user", K_STR, F(user), 0, 0 },
    { "group", K_STR, F(group), 0, 0 },
    { "limit_request_line", K_INT, F(limit_request_line), 64, 1 << 20 },
    { "limit_request_fields", K_INT, F(limit_request_fields), 1, 32768 },
    { "limit_request_field_size", K_INT, F(limit_request_field_size), 64, 1 << 20 },
    { "keepalive", K_DURATION, F(keepalive), 0, 0 },
    { "forwarded_allow_ips", K_NETS, F(forwarded_allow_ips), 1, 0 },
    { "metrics", K_ADDR, F(metrics), 0, 0 },

    { "log_format", K_LOG_FORMAT, F(log_format), 0, 0 },
    { NULL, 0, 0, 0, 0 }
};

static const struct key proxy_keys[] = {
    { "listen", K_LISTEN, F(proxy_listen), 0, 0 },
    { "upstream", K_ADDRS, F(upstream), 0, 0 },
    { "client_max_body_size", K_SIZE, F(client_max_body_size), 0, 0 },
    { "client_body_buffer_size", K_SIZE, F(client_body_buffer_size), 0, 0 },
    { "access_log", K_BOOL, F(access_log), 0, 0 },
    { "client_header_timeout", K_DURATION, F(client_header_timeout), 0, 0 },
    { "client_body_timeout", K_DURATION, F(client_body_timeout), 0, 0 },
    { "keepalive_timeout", K_DURATION, F(keepalive_timeout), 0, 0 },
    { "proxy_connect_timeout", K_DURATION, F(proxy_connect_timeout), 0, 0 },
    { "proxy_read_timeout", K_DURATION, F(proxy_read_timeout), 0, 0 },
    { "max_connections", K_INT, F(max_connections), 1, 10000000 },
    { "user", K_STR, F(proxy_user), 0, 0 },
    { "group", K_STR, F(proxy_group), 0, 0 },
    { "certificate", K_CERT, F(tls_pairs), 0, 0 },
    { "certificate_key", K_CERT_KEY, F(tls_pairs), 0, 0 },
    { "tls_protocols", K_TLS_PROTOCOLS, F(tls_protocols), 0, 0 },
    { "tls_ciphers", K_STR, F(tls_ciphers), 0, 0 },
    { "http2", K_BOOL, F(http2), 0, 0 },
    { "redirect_https", K_BOOL, F(redirect_https), 0, 0 },
    { "hsts", K_DURATION, F(hsts), 0, 0 },
    { "real_ip_from", K_NETS, F(real_ip_from), 0, 0 },
    { "proxy_buffer_size", K_SIZE, F(proxy_buffer_size), 0, 0 },
    { "metrics", K_ADDR, F(proxy_metrics), 0, 0 },
    { "max_fails", K_INT, F(max_fails), 0, 1000000 },
    { "fail_timeout", K_POSITIVE_DURATION, F(fail_timeout), 0, 0 },
    { "health_check", K_PATH_OR_OFF, F(health_check), 0, 0 },
    { "health_check_interval", K_POSITIVE_DURATION, F(health_check_interval), 0, 0 },

    { "log_format", K_LOG_FORMAT, F(proxy_log_format), 0, 0 },
    { "gzip", K_BOOL, F(gzip), 0, 0 },
    { "brotli", K_BOOL, F(brotli), 0, 0 },
    { "gzip_comp_level", K_INT, F(gzip_comp_level), 1, 9 },
    { "brotli_comp_level", K_INT, F(brotli_comp_level), 0, 11 },
    { "gzip_min_length", K_SIZE, F(gzip_min_length), 0, 0 },
    { "compress_types", K_TYPES, F(compress_types), 0, 0 },
    { "max_tunnels", K_INT, F(max_tunnels), 0, 10000000 },
    { "limit_req", K_RATE, F(limit), 0, 0 },
    { "limit_conn", K_INT, F(limit.conn), 1, 1000000 },
    { "limit_req_status", K_INT, F(limit_req_status), 400, 599 },
    { "limit_conn_status", K_INT, F(limit_conn_status), 400, 599 },
    { "limit_allow", K_NETS, F(limit_allow), 0, 0 },
    { "limit_zone_size", K_SIZE, F(limit_zone_size), 0, 0 },
    { "workers", K_WORKERS, F(proxy_workers), 1, AS_PROXY_MAX_WORKERS },
    { "acme", K_BOOL, F(acme), 0, 0 },
    { "acme_domains", K_HOSTS, F(acme_domains), 0, 0 },
    { "acme_email", K_STR, F(acme_email), 0, 0 },
    { "acme_directory", K_STR, F(acme_directory), 0, 0 },
    { NULL, 0, 0, 0, 0 }
};

#define S(field) offsetof(struct as_site, field)

static const struct site_key site_keys[] = {
    { { "server_name", K_HOSTS, S(server_name), 0, 0 }, NO_FROM },
    { { "upstream", K_ADDRS, S(upstream), 0, 0 }, NO_FROM },
    { { "client_max_body_size", K_SIZE, S(client_max_body_size), 0, 0 }, F(client_max_body_size) },
    { { "client_body_buffer_size", K_SIZE, S(client_body_buffer_size), 0, 0 }, F(client_body_buffer_size) },
    { { "access_log", K_BOOL, S(access_log), 0, 0 }, F(access_log) },
    { { "proxy_connect_timeout", K_DURATION, S(proxy_connect_timeout), 0, 0 }, F(proxy_connect_timeout) },
    { { "proxy_read_timeout", K_DURATION, S(proxy_read_timeout), 0, 0 }, F(proxy_read_timeout) },
    /* The site's pairs join [proxy]'s: SNI picks by the certificates' names. */
    { { "limit_req", K_RATE, S(limit), 0, 0 }, NO_FROM },
    { { "limit_conn", K_INT, S(limit.conn), 1, 1000000 }, NO_FROM },
    { { "certificate", K_CERT, 0, 0, 0 }, NO_FROM },
    { { "certificate_key", K_CERT_KEY, 0, 0, 0 }, NO_FROM },
    { { NULL, 0, 0, 0, 0 }, NO_FROM }
};

enum section { S_NONE, S_APP, S_SUPERVISOR, S_PROXY, S_SITE, S_LOCATION, S_BAD };

struct loader {
    struct as_config *cfg;
    FILE *f;
    int lineno;
    int errors;
    enum section section;
    int app_line;
    struct as_site *site;       /* the last [site] so far: later [location]s are its */
    bool bad_site;              /* the last [site] header was refused: skip its locations */
    char *linebuf;
    size_t linecap;
};

static void err_at(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_at(struct loader *ld, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: ", ld->cfg->path, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ld->errors++;
}

static void list_add(struct as_strlist *l, const char *v, int line)
{
    l->v = as_xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->line = as_xrealloc(l->line, (l->n + 1) * sizeof *l->line);
    l->v[l->n] = as_xstrdup(v);
    l->line[l->n] = line;
    l->n++;
}

static void list_free(struct as_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->line);
    memset(l, 0, sizeof *l);
}

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* The locations a [location] section adds to: the last [site]'s, else
 * the default site's. */
static struct as_location **locations_of(struct loader *ld, size_t **n)
{
    if (ld->site) {
        *n = &ld->site->n_locations;
        return &ld->site->locations;
    }
    *n = &ld->cfg->n_locations;
    return &ld->cfg->locations;
}

/* "[location /static/]" or "[location = /favicon.ico]". */
static void begin_location(struct loader *ld, char *rest)
{
    size_t *n;
    struct as_location **locs = locations_of(ld, &n);
    struct as_location *loc;
    bool exact = false;

    if (ld->bad_site) {
        ld->section = S_BAD;    /* the site's header was an error already */
        return;
    }
    rest = trim(rest);
    if (rest[0] == '=' && (rest[1] == ' ' || rest[1] == '\t')) {
        exact = true;
        rest = trim(rest + 1);
    }
    if (rest[0] != '/' || strpbrk(rest, " \t")) {
        err_at(ld, ld->lineno, "location must be \"/PREFIX\" or \"= /PATH\", got \"%s\"", rest);
        ld->section = S_BAD;
        return;
    }
    for (size_t i = 0; i < *n; i++) {
        if ((*locs)[i].exact == exact && !strcmp((*locs)[i].prefix, rest)) {
            err_at(ld, ld->lineno, "duplicate location \"%s\" (first at line %d)", rest, (*locs)[i].line);
            ld->section = S_BAD;
            return;
        }
    }
    *locs = as_xrealloc(*locs, (*n + 1) * sizeof **locs);
    loc = &(*locs)[(*n)++];
    memset(loc, 0, sizeof *loc);
    loc->prefix = as_xstrdup(rest);
    loc->exact = exact;
    loc->expires = -1;
    loc->line = ld->lineno;
    ld->section = S_LOCATION;
}

/* "[site NAME]": a virtual host; the [location] sections after it are its. */
static void begin_site(struct loader *ld, char *name)
{
    struct as_config *c = ld->cfg;
    struct as_site *site;

    name = trim(name);
    ld->section = S_BAD;
    ld->bad_site = true;
    if (!*name || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name)) {
        err_at(ld, ld->lineno, "site name must be letters, digits, \".\", \"_\" or \"-\", got \"%s\"", name);
        return;
    }
    if (!strcmp(name, "default")) {
        err_at(ld, ld->lineno, "\"default\" is the name of the default site ([proxy]'s upstream and locations)");
        return;
    }
    for (size_t i = 0; i < c->n_sites; i++) {
        if (!strcmp(c->sites[i].name, name)) {
            err_at(ld, ld->lineno, "duplicate site \"%s\" (first at line %d)", name, c->sites[i].line);
            return;
        }
    }
    c->sites = as_xrealloc(c->sites, (c->n_sites + 1) * sizeof *c->sites);
    site = &c->sites[c->n_sites++];
    memset(site, 0, sizeof *site);
    site->name = as_xstrdup(name);
    site->line = ld->lineno;
    ld->site = site;
    ld->bad_site = false;
    ld->section = S_SITE;
}

static void begin_section(struct loader *ld, char *name)
{
    name = trim(name);
    if (!strcmp(name, "app")) {
        ld->section = S_APP;
        ld->app_line = ld->lineno;
    } else if (!strcmp(name, "supervisor")) {
        ld->section = S_SUPERVISOR;
    } else if (!strcmp(name, "proxy")) {
        ld->section = S_PROXY;
        ld->cfg->proxy_line = ld->lineno;
    } else if (!strncmp(name, "site", 4) && (name[4] == ' ' || name[4] == '\t' || !name[4])) {
        begin_site(ld, name + 4);
    } else if (!strncmp(name, "location", 8) && (name[8] == ' ' || name[8] == '\t')) {
        begin_location(ld, name + 8);
    } else {
        err_at(ld, ld->lineno, "unknown section [%s]", name);
        ld->section = S_BAD;
    }
}

/* Checks one raw line for what inih would reject or misread, and tracks the
 * current section so that empty unknown sections are reported too. */
static void check_line(struct loader *ld, char *line)
{
    char *s = line, *close;

    while (isspace((unsigned char)*s))
        s++;
    if (!*s || *s == ';' || *s == '#')
        return;
    if (*s == '[') {
        close = strchr(s, ']');
        if (!close) {
            err_at(ld, ld->lineno, "section header without \"]\"");
            ld->section = S_BAD;
            return;
        }
        *close = '\0';
        begin_section(ld, s + 1);
        *close = ']';
        return;
    }
    if (s != line)
        err_at(ld, ld->lineno, "indented line (continuation lines are not supported)");
    else if (!strpbrk(s, "=:"))
        err_at(ld, ld->lineno, "expected \"key = value\"");
    else if (ld->section == S_NONE)
        err_at(ld, ld->lineno, "key outside of any section");
}

static char *reader(char *str, int num, void *stream)
{
    struct loader *ld = stream;
    ssize_t n = getline(&ld->linebuf, &ld->linecap, ld->f);

    if (n < 0)
        return NULL;
    ld->lineno++;
    if (n > 0 && ld->linebuf[n - 1] == '\n')
        ld->linebuf[--n] = '\0';
    if (memchr(ld->linebuf, '\0', (size_t)n)) {
        err_at(ld, ld->lineno, "NUL byte in line");
        str[0] = '\0';
        return str;
    }
    if (n >= num - 1) {
        err_at(ld, ld->lineno, "line longer than %d characters", num - 2);
        str[0] = '\0';
        return str;
    }
    check_line(ld, ld->linebuf);
    /* Lines we rejected reach inih as blank, so it reports nothing twice. */
    memcpy(str, ld->linebuf, (size_t)n + 1);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

/* [proxy] listen: an address, then flags ("ssl", "http2"). */
static bool set_listen(struct loader *ld, const struct key *k, const char *value)
{
    struct as_config *c = ld->cfg;
    char buf[512], err[256], *save = NULL, *addr, *word;
    struct as_addr a;
    unsigned flags = 0;

    if (strlen(value) >= sizeof buf) {
        err_at(ld, ld->lineno, "%s: too long", k->name);
        return false;
    }
    strcpy(buf, value);
    addr = strtok_r(buf, " \t", &save);
    if (!addr || !as_addr_parse(addr, &a, err, sizeof err)) {
        err_at(ld, ld->lineno, "%s: %s", k->name, addr ? err : "no address");
        return false;
    }
    while ((word = strtok_r(NULL, " \t", &save))) {
        if (!strcmp(word, "ssl")) {
            flags |= AS_LISTEN_SSL;
        } else if (!strcmp(word, "http2")) {
            flags |= AS_LISTEN_HTTP2;
        } else if (!strcmp(word, "proxy_protocol")) {
            flags |= AS_LISTEN_PROXY_PROTOCOL;
        } else {
            err_at(ld, ld->lineno, "%s: unknown flag \"%s\" after the address (known: ssl, http2, proxy_protocol)",
                   k->name, word);
            return false;
        }
    }
    if (a.is_unix && (flags & AS_LISTEN_SSL)) {
        err_at(ld, ld->lineno, "%s: ssl needs a TCP address", k->name);
        return false;
    }
    list_add(&c->proxy_listen, addr, ld->lineno);
    c->proxy_listen_flags = as_xrealloc(c->proxy_listen_flags, c->proxy_listen.n * sizeof *c->proxy_listen_flags);
    c->proxy_listen_flags[c->proxy_listen.n - 1] = flags;
    return true;
}

/* certificate starts a pair, certificate_key completes the pair before it. */
static bool set_tls_file(struct loader *ld, const struct key *k, const char *value)
{
    struct as_config *c = ld->cfg;
    struct as_tls_pair *p;

    if (value[0] != '/') {
        err_at(ld, ld->lineno, "%s: \"%s\" is not an absolute path", k->name, value);
        return false;
    }
    if (k->kind == K_CERT) {
        c->tls_pairs = as_xrealloc(c->tls_pairs, (c->n_tls_pairs + 1) * sizeof *c->tls_pairs);
        p = &c->tls_pairs[c->n_tls_pairs++];
        memset(p, 0, sizeof *p);
        p->cert = as_xstrdup(value);
        p->cert_line = ld->lineno;
        return true;
    }
    p = c->n_tls_pairs ? &c->tls_pairs[c->n_tls_pairs - 1] : NULL;
    if (!p || p->key) {
        err_at(ld, ld->lineno, "certificate_key without a certificate line before it");
        return false;
    }
    p->key = as_xstrdup(value);
    p->key_line = ld->lineno;
    return true;
}

static bool set_tls_protocols(struct loader *ld, const char *value)
{
    char buf[256], *save = NULL, *word;
    unsigned set = 0;

    snprintf(buf, sizeof buf, "%s", value);
    for (word = strtok_r(buf, " \t,", &save); word; word = strtok_r(NULL, " \t,", &save)) {
        if (!strcmp(word, "TLSv1.2")) {
            set |= AS_TLS_1_2;
        } else if (!strcmp(word, "TLSv1.3")) {
            set |= AS_TLS_1_3;
        } else {
            err_at(ld, ld->lineno, "tls_protocols: \"%s\" is not TLSv1.2 or TLSv1.3%s", word,
                   !strncmp(word, "TLSv1", 5) || !strncmp(word, "SSL", 3) ? " (older protocols are insecure)" : "");
            return false;
        }
    }
    if (!set) {
        err_at(ld, ld->lineno, "tls_protocols: no protocol given");
        return false;
    }
    ld->cfg->tls_protocols = set;
    return true;
}

/* A server_name: a host name ("example.com", "127.0.0.1", "[::1]") or a
 * wildcard for its subdomains ("*.example.com"), no port. */
static bool host_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (s[0] == '*') {
        if (s[1] != '.')
            return false;
        s += 2;
        n -= 2;
    } else if (s[0] == '[') {
        return n > 2 && s[n - 1] == ']' && strspn(s + 1, "0123456789abcdefABCDEF:.") == n - 2;
    }
    if (!n || n > 253)
        return false;
    for (const char *label = s; *label; ) {
        size_t len = strspn(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
        if (len == 0 || len > 63 || (label[len] && label[len] != '.'))
            return false;
        label += len;
        if (*label == '.' && !*++label)
            return false;   /* a trailing dot: the name is written without it */
    }
    return true;
}

/* server_name = NAME [NAME...]: each name becomes an entry, in lower case. */
static bool add_hosts(struct loader *ld, struct as_strlist *l, const char *value)
{
    char *copy = as_xstrdup(value), *save = NULL, *tok;
    bool ok = true;

    for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (!host_name_valid(tok)) {
            err_at(ld, ld->lineno, "server_name: \"%s\" is not a host name or \"*.example.com\"", tok);
            ok = false;
            continue;
        }
        for (char *p = tok; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        list_add(l, tok, ld->lineno);
    }
    free(copy);
    return ok;
}

/* limit_req = RATE [burst=N] [nodelay], RATE as nginx writes it: "10r/s"
 * or "30r/m". */
static bool set_rate(struct loader *ld, struct as_limit *l, const char *value)
{
    char *copy = as_xstrdup(value), *save = NULL, *tok, *end;
    bool ok = true, have_rate = false;
    struct as_limit n = { .conn = l->conn };

    for (tok = strtok_r(copy, " \t", &save); tok && ok; tok = strtok_r(NULL, " \t", &save)) {
        if (!strncmp(tok, "burst=", 6)) {
            errno = 0;
            long b = strtol(tok + 6, &end, 10);
            if (errno || end == tok + 6 || *end || b < 0 || b > 1000000) {
                err_at(ld, ld->lineno, "limit_req: \"%s\": burst must be a whole number from 0 to 1000000", tok);
                ok = false;
            }
            n.burst = b;
        } else if (!strcmp(tok, "nodelay")) {
            n.nodelay = true;
        } else if (!have_rate) {
            errno = 0;
            double r = strtod(tok, &end);
            if (errno || end == tok || r <= 0 || r > 1e6 || (strcmp(end, "r/s") && strcmp(end, "r/m"))) {
                err_at(ld, ld->lineno, "limit_req: \"%s\" is not a rate (e.g. 10r/s, 30r/m)", tok);
                ok = false;
            }
            n.rate = !strcmp(end, "r/m") ? r / 60 : r;
            have_rate = true;
        } else {
            err_at(ld, ld->lineno, "limit_req: unknown word \"%s\" (expected RATE [burst=N] [nodelay])", tok);
            ok = false;
        }
    }
    if (ok && !have_rate) {
        err_at(ld, ld->lineno, "limit_req: no rate (e.g. 10r/s)");
        ok = false;
    }
    free(copy);
    if (ok)
        *l = n;
    return ok;
}

/* compress_types = TYPE [TYPE...]: media types ("text/html"), each an
 * entry in lower case; "*" for every type. */
static bool add_types(struct loader *ld, struct as_strlist *l, const char *value)
{
    static const char tchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    char *copy = as_xstrdup(value), *save = NULL, *tok;
    bool ok = true;

    for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        size_t a = strspn(tok, tchar);
        if (strcmp(tok, "*") && (a == 0 || tok[a] != '/' || !tok[a + 1] || strspn(tok + a + 1, tchar) != strlen(tok + a + 1))) {
            err_at(ld, ld->lineno, "compress_types: \"%s\" is not a media type (e.g. text/html) or *", tok);
            ok = false;
            continue;
        }
        for (char *p = tok; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        list_add(l, tok, ld->lineno);
    }
    free(copy);
    return ok;
}

static bool set_value(struct loader *ld, char *base, const struct key *k, const char *value)
{
    char err[256];
    long l;
    struct as_addr addr;

    switch (k->kind) {
    case K_STR:
        free(*(char **)(base + k->off));
        *(char **)(base + k->off) = as_xstrdup(value);
        if (base == (char *)ld->cfg && k->off == F(tls_ciphers))
            ld->cfg->tls_ciphers_line = ld->lineno;
        if (base == (char *)ld->cfg && k->off == F(acme_email))
            ld->cfg->acme_email_line = ld->lineno;
        if (base == (char *)ld->cfg && k->off == F(acme_directory))
            ld->cfg->acme_directory_line = ld->lineno;
        return true;
    case K_LIST:
        list_add((struct as_strlist *)(base + k->off), value, ld->lineno);
        return true;
    case K_ADDRS:
        if (!as_addr_parse(value, &addr, err, sizeof err)) {
            err_at(ld, ld->lineno, "%s: %s", k->name, err);
            return false;
        }
        list_add((struct as_strlist *)(base + k->off), value, ld->lineno);
        return true;
    case K_HOSTS:
        return add_hosts(ld, (struct as_strlist *)(base + k->off), value);
    case K_LISTEN:
        return set_listen(ld, k, value);
    case K_CERT:
    case K_CERT_KEY:
        return set_tls_file(ld, k, value);
    case K_TLS_PROTOCOLS:
        return set_tls_protocols(ld, value);
    case K_ADDR:
        if (!as_addr_parse(value, &addr, err, sizeof err)) {
            err_at(ld, ld->lineno, "%s: %s", k->name, err);
            return false;
        }
        free(*(char **)(base + k->off));
        *(char **)(base + k->off) = as_xstrdup(value);
        *(k->off == F(metrics) ? &ld->cfg->metrics_line : &ld->cfg->proxy_metrics_line) = ld->lineno;
        return true;
    case K_INT:
        if (!as_parse_long(value, k->min, k->max, &l)) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not a whole number from %ld to %ld", k->name, value, k->min, k->max);
            return false;
        }
        if (base == (char *)ld->cfg && k->off == F(workers))
            ld->cfg->workers = (int)l;
        else
            *(long *)(base + k->off) = l;
        return true;
    case K_WORKERS:     /* "auto" or a number */
        if (!strcmp(value, "auto")) {
            *(int *)(base + k->off) = AS_PROXY_WORKERS_AUTO;
            return true;
        }
        if (!as_parse_long(value, k->min, k->max, &l)) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not auto or a whole number from %ld to %ld", k->name, value, k->min,
                   k->max);
            return false;
        }
        *(int *)(base + k->off) = (int)l;
        return true;
    case K_SIZE:
        if (!as_parse_size(value, (size_t *)(base + k->off))) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not a size (e.g. 512k, 10m, 1g)", k->name, value);
            return false;
        }
        return true;
    case K_DURATION:
        if (!as_parse_duration(value, (double *)(base + k->off))) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not a duration (e.g. 30, 30s, 5m, 1h, 30d)", k->name, value);
            return false;
        }
        return true;
    case K_NETS: {
        /* Several per line, comma- or blank-separated, as gunicorn users
         * write forwarded_allow_ips; "unix" where min is 1. */
        char *copy = as_xstrdup(value), *save = NULL;
        bool ok = true;
        for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            struct as_net net;
            if (!(k->min && !strcmp(t, "unix")) && !as_net_parse(t, &net)) {
                err_at(ld, ld->lineno, "%s: \"%s\" is not an IP address, a network (10.0.0.0/8)%s or *", k->name, t,
                       k->min ? ", unix" : "");
                ok = false;
            }
        }
        free(copy);
        if (ok)
            list_add((struct as_strlist *)(base + k->off), value, ld->lineno);
        return ok;
    }
    case K_POSITIVE_DURATION:
        if (!as_parse_duration(value, (double *)(base + k->off)) || *(double *)(base + k->off) <= 0) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not a duration above 0 (e.g. 0.5, 10s, 1m)", k->name, value);
            return false;
        }
        return true;
    case K_PATH_OR_OFF: {
        /* A path the proxy can put in a request line as it is. */
        bool ok = value[0] == '/';
        for (const char *p = value; ok && *p; p++)
            ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
        free(*(char **)(base + k->off));
        *(char **)(base + k->off) = NULL;
        if (!strcmp(value, "off"))
            return true;
        if (!ok) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not off or a path starting with / (no blanks)", k->name, value);
            return false;
        }
        *(char **)(base + k->off) = as_xstrdup(value);
        return true;
    }
    case K_LOG_FORMAT:
        if (strcmp(value, "text") && strcmp(value, "json")) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not text or json", k->name, value);
            return false;
        }
        *(int *)(base + k->off) = strcmp(value, "json") ? AS_LOG_TEXT : AS_LOG_JSON;
        return true;
    case K_RATE:
        return set_rate(ld, (struct as_limit *)(base + k->off), value);
    case K_TYPES:
        return add_types(ld, (struct as_strlist *)(base + k->off), value);
    case K_LEVEL:
        if ((l = as_log_level_parse(value)) < 0) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not a log level (emerg, alert, crit, err, warning, notice, info, debug)",
                   k->name, value);
            return false;
        }
        *(int *)(base + k->off) = (int)l;
        return true;
    case K_BOOL:
        if (!as_parse_bool(value, (bool *)(base + k->off))) {
            err_at(ld, ld->lineno, "%s: \"%s\" is not on or off", k->name, value);
            return false;
        }
        if (base == (char *)ld->cfg && k->off == F(acme))
            ld->cfg->acme_line = ld->lineno;
        return true;
    }
    return false;
}

static void set_location(struct loader *ld, const char *name, const char *value)
{
    size_t *n;
    struct as_location *loc = &(*locations_of(ld, &n))[*n - 1];
    double d;

    if (!strcmp(name, "alias")) {
        if (value[0] != '/') {
            err_at(ld, ld->lineno, "alias: \"%s\" is not an absolute path", value);
            return;
        }
        free(loc->alias);
        loc->alias = as_xstrdup(value);
    } else if (!strcmp(name, "expires")) {
        if (!as_parse_duration(value, &d) || d > 10 * 365 * 86400.0) {
            err_at(ld, ld->lineno, "expires: \"%s\" is not a duration (e.g. 30d, 1h)", value);
            return;
        }
        loc->expires = (long)d;
    } else if (!strcmp(name, "limit_req")) {
        set_rate(ld, &loc->limit, value);
    } else if (!strcmp(name, "limit_conn")) {
        long l;
        if (!as_parse_long(value, 1, 1000000, &l))
            err_at(ld, ld->lineno, "limit_conn: \"%s\" is not a whole number from 1 to 1000000", value);
        else
            loc->limit.conn = l;
    } else if (!strcmp(name, "internal")) {
        if (!as_parse_bool(value, &loc->internal))
            err_at(ld, ld->lineno, "internal: \"%s\" is not on or off", value);
    } else {
        err_at(ld, ld->lineno, "unknown key \"%s\" in [location %s%s]", name,
               loc->exact ? "= " : "", loc->prefix);
    }
}

static void set_site(struct loader *ld, const char *name, const char *value)
{
    for (const struct site_key *k = site_keys; k->k.name; k++) {
        if (!strcmp(k->k.name, name)) {
            if (set_value(ld, (char *)ld->site, &k->k, value))
                ld->site->given |= 1u << (k - site_keys);
            return;
        }
    }
    err_at(ld, ld->lineno, "unknown key \"%s\" in [site %s]", name, ld->site->name);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *ld = user;
    const struct key *keys;
    const char *sname;

    (void)section;
    switch (ld->section) {
    case S_APP: keys = app_keys; sname = "app"; break;
    case S_SUPERVISOR: keys = supervisor_keys; sname = "supervisor"; break;
    case S_PROXY: keys = proxy_keys; sname = "proxy"; break;
    case S_LOCATION: set_location(ld, name, value); return 1;
    case S_SITE: set_site(ld, name, value); return 1;
    default: return 1;  /* already reported */
    }
    for (const struct key *k = keys; k->name; k++)
        if (!strcmp(k->name, name))
            return set_value(ld, (char *)ld->cfg, k, value), 1;
    err_at(ld, ld->lineno, "unknown key \"%s\" in [%s]", name, sname);
    return 1;
}

static char instance[AS_INSTANCE_MAX + 1];     /* "" = none */

bool as_instance_name_valid(const char *name)
{
    size_t n = strlen(name);

    return n && n <= AS_INSTANCE_MAX && name[0] != '.' && strcmp(name, "appstack") &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

bool as_config_set_instance(const char *name)
{
    if (!name) {
        instance[0] = '\0';
        return true;
    }
    if (!as_instance_name_valid(name))
        return false;
    snprintf(instance, sizeof instance, "%s", name);
    return true;
}

/* PREFIX AS_RUN_DIR/NAME/FILE of the instance. */
static char *instance_path(const char *prefix, const char *file)
{
    char *p;

    if (asprintf(&p, "%s%s/%s/%s", prefix, AS_RUN_DIR, instance, file) < 0)
        as_out_of_memory();
    return p;
}

static void set_defaults(struct as_config *c)
{
    memset(c, 0, sizeof *c);
    c->workers = 2;
    c->threads = 1;
    c->stderr_level = LOG_WARNING;
    c->timeout = 30;
    c->graceful_timeout = 30;
    c->control = instance[0] ? instance_path("", "control.sock") : as_xstrdup(AS_RUN_DIR "/control.sock");
    c->limit_request_line = 4094;
    c->limit_request_fields = 100;
    c->limit_request_field_size = 8190;
    c->keepalive = 5;
    c->client_max_body_size = 10 << 20;
    c->client_body_buffer_size = 64 << 10;
    c->proxy_buffer_size = 64 << 10;
    c->access_log = true;
    c->client_header_timeout = 60;
    c->client_body_timeout = 60;
    c->keepalive_timeout = 75;
    c->proxy_connect_timeout = 5;
    c->proxy_read_timeout = 60;
    c->max_connections = 10000;
    c->max_fails = 1;
    c->fail_timeout = 10;
    c->health_check_interval = 5;
    c->tls_protocols = AS_TLS_1_2 | AS_TLS_1_3;
    c->http2 = true;
    c->gzip_comp_level = 5;
    c->brotli_comp_level = 4;
    c->gzip_min_length = 256;
    c->max_tunnels = 5000;
    c->limit_req_status = 429;
    c->limit_conn_status = 429;
    c->limit_zone_size = 10 << 20;
}

static bool is_dotted_name(const char *s, size_t n)
{
    bool start = true;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (start)
                return false;
            start = true;
        } else if (isalpha(ch) || ch == '_' || (!start && isdigit(ch)) || ch >= 0x80) {
            start = false;
        } else {
            return false;
        }
    }
    return !start;
}

/* module = "pkg.mod:callable" -> module, callable. */
static void check_app(struct loader *ld)
{
    struct as_config *c = ld->cfg;
    struct stat st;
    char *colon;

    if (c->module) {
        colon = strchr(c->module, ':');
        if (colon) {
            c->callable = as_xstrdup(colon + 1);
            *colon = '\0';
        } else {
            c->callable = as_xstrdup("application");
        }
        if (!is_dotted_name(c->module, strlen(c->module)) || !is_dotted_name(c->callable, strlen(c->callable)))
            err_at(ld, ld->app_line, "module: expected \"package.module:callable\", got \"%s%s%s\"",
                   c->module, colon ? ":" : "", colon ? c->callable : "");
    }
    if (c->chdir) {
        errno = 0;
        if (stat(c->chdir, &st) || !S_ISDIR(st.st_mode))
            err_at(ld, ld->app_line, "chdir: %s: %s", c->chdir, errno ? strerror(errno) : "not a directory");
    }
    for (size_t i = 0; i < c->env.n; i++) {
        const char *eq = strchr(c->env.v[i], '=');
        if (!eq || eq == c->env.v[i])
            err_at(ld, c->env.line[i], "env: expected \"NAME=value\", got \"%s\"", c->env.v[i]);
    }
    if (c->script_name && c->script_name[0] && (c->script_name[0] != '/' || c->script_name[strlen(c->script_name) - 1] == '/'))
        err_at(ld, ld->app_line, "script_name: \"%s\" must start with / and not end with /", c->script_name);
}

/* The ACME options' values; what the proxy needs besides (acme_domains
 * with acme = on, a TLS listen) is the proxy's check. */
static void check_acme(struct loader *ld)
{
    const struct as_config *c = ld->cfg;
    const char *e = c->acme_email;

    for (size_t i = 0; i < c->acme_domains.n; i++)
        if (c->acme_domains.v[i][0] == '*')
            err_at(ld, c->acme_domains.line[i], "acme_domains: %s: a wildcard needs DNS validation, and the proxy "
                   "obtains certificates by HTTP-01 (name the hosts one by one)", c->acme_domains.v[i]);
    if (e && (!strchr(e, '@') || e[0] == '@' || strpbrk(e, " \t,<>\"")))
        err_at(ld, c->acme_email_line, "acme_email: \"%s\" is not an email address", e);
    if (c->acme_directory && strncmp(c->acme_directory, "https://", 8))
        err_at(ld, c->acme_directory_line, "acme_directory: \"%s\" is not an https:// URL", c->acme_directory);
}

static void check_tls_pairs(struct loader *ld)
{
    for (size_t i = 0; i < ld->cfg->n_tls_pairs; i++)
        if (!ld->cfg->tls_pairs[i].key)
            err_at(ld, ld->cfg->tls_pairs[i].cert_line, "certificate without a certificate_key line after it");
}

static void check_locations(struct loader *ld, const struct as_location *locs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct as_location *loc = &locs[i];
        /* without alias, a location forwards; that is only worth it for its limits */
        if (!loc->alias && !loc->limit.rate && !loc->limit.conn)
            err_at(ld, loc->line, "location %s%s has no alias", loc->exact ? "= " : "", loc->prefix);
        if (!loc->alias && loc->internal)
            err_at(ld, loc->line, "location %s%s: internal needs an alias", loc->exact ? "= " : "", loc->prefix);
    }
}

static void inherit(const struct site_key *k, struct as_site *site, const struct as_config *c)
{
    char *dst = (char *)site + k->k.off;
    const char *src = (const char *)c + k->from;

    switch (k->k.kind) {
    case K_SIZE: memcpy(dst, src, sizeof(size_t)); break;
    case K_BOOL: memcpy(dst, src, sizeof(bool)); break;
    case K_DURATION: memcpy(dst, src, sizeof(double)); break;
    default: abort();   /* only these kinds are inherited */
    }
}

/* The server_name entry of an earlier site, or earlier in SITE, equal to
 * SITE's entry J: its site and line, or NULL. */
static const struct as_site *name_taken(const struct as_config *c, const struct as_site *site, size_t j, int *line)
{
    const char *name = site->server_name.v[j];

    for (const struct as_site *other = c->sites; other <= site; other++) {
        size_t end = other == site ? j : other->server_name.n;
        for (size_t k = 0; k < end; k++) {
            if (!strcmp(other->server_name.v[k], name)) {
                *line = other->server_name.line[k];
                return other;
            }
        }
    }
    return NULL;
}

/* Every site has a name to answer to, no name belongs to two sites, and
 * what a site does not set is [proxy]'s. */
static void check_sites(struct loader *ld)
{
    struct as_config *c = ld->cfg;

    for (size_t i = 0; i < c->n_sites; i++) {
        struct as_site *site = &c->sites[i];
        const struct as_site *other;
        int line;

        if (!site->server_name.n)
            err_at(ld, site->line, "[site %s] has no server_name", site->name);
        for (size_t j = 0; j < site->server_name.n; j++)
            if ((other = name_taken(c, site, j, &line)))
                err_at(ld, site->server_name.line[j], "server_name %s is [site %s]'s already (line %d)",
                       site->server_name.v[j], other->name, line);
        for (const struct site_key *k = site_keys; k->k.name; k++)
            if (k->from != NO_FROM && !(site->given & (1u << (k - site_keys))))
                inherit(k, site, c);
        check_locations(ld, site->locations, site->n_locations);
    }
}

int as_config_load(const char *path, struct as_config *cfg)
{
    struct loader ld = { .cfg = cfg };

    set_defaults(cfg);
    cfg->path = as_xstrdup(path);
    ld.f = fopen(path, "re");
    if (!ld.f) {
        fprintf(stderr, "%s:0: cannot open: %s\n", path, strerror(errno));
        return 1;
    }
    errno = 0;
    ini_parse_stream(reader, &ld, handler, &ld);
    if (ferror(ld.f))
        err_at(&ld, ld.lineno, "read error: %s", strerror(errno));
    fclose(ld.f);
    free(ld.linebuf);
    if (instance[0] && !cfg->listen.n) {
        char *app = instance_path("unix:", "app.sock");    /* what appstack@NAME.socket holds */
        list_add(&cfg->listen, app, 0);
        free(app);
    }
    check_app(&ld);
    check_locations(&ld, cfg->locations, cfg->n_locations);
    check_sites(&ld);
    check_tls_pairs(&ld);
    check_acme(&ld);
    return ld.errors;
}

static void free_locations(struct as_location *locs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(locs[i].prefix);
        free(locs[i].alias);
    }
    free(locs);
}

void as_config_free(struct as_config *c)
{
    free(c->path);
    free(c->module);
    free(c->callable);
    free(c->chdir);
    free(c->virtualenv);
    free(c->script_name);
    free(c->control);
    free(c->user);
    free(c->group);
    free(c->proxy_user);
    free(c->proxy_group);
    free(c->metrics);
    free(c->proxy_metrics);
    list_free(&c->acme_domains);
    free(c->acme_email);
    free(c->acme_directory);
    free(c->health_check);
    list_free(&c->pythonpath);
    list_free(&c->env);
    list_free(&c->listen);
    list_free(&c->forwarded_allow_ips);
    list_free(&c->real_ip_from);
    list_free(&c->compress_types);
    list_free(&c->limit_allow);
    list_free(&c->proxy_listen);
    free(c->proxy_listen_flags);
    for (size_t i = 0; i < c->n_tls_pairs; i++) {
        free(c->tls_pairs[i].cert);
        free(c->tls_pairs[i].key);
    }
    free(c->tls_pairs);
    free(c->tls_ciphers);
    list_free(&c->upstream);
    free_locations(c->locations, c->n_locations);
    for (size_t i = 0; i < c->n_sites; i++) {
        struct as_site *site = &c->sites[i];
        free(site->name);
        list_free(&site->server_name);
        list_free(&site->upstream);
        free_locations(site->locations, site->n_locations);
    }
    free(c->sites);
    memset(c, 0, sizeof *c);
}

const char *as_config_default_path(void)
{
    static char path[sizeof AS_CONFIG_DIR + AS_INSTANCE_MAX + 8];
    const char *env = getenv("APPSTACK_CONFIG");

    if (instance[0]) {
        snprintf(path, sizeof path, "%s/%s.ini", AS_CONFIG_DIR, instance);
        return path;
    }
    return env && *env ? env : AS_DEFAULT_CONFIG;
}
