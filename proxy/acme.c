/* ACME's part of the configuration (acme.h): where its state lives, what
 * a config with acme = on must have, and the certificate pair it adds to
 * the TLS listens. The client runs from acme_run.c, in the master. */
#include "acme.h"
#include "proxy.h"
#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PLACEHOLDER_DAYS 90

static bool fmt(char *out, const char *f, ...) __attribute__((format(printf, 2, 3)));

static bool fmt(char *out, const char *f, ...)
{
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(out, PATH_MAX, f, ap);
    va_end(ap);
    return n >= 0 && n < PATH_MAX;
}

bool acme_paths(const struct as_config *cfg, struct acme_paths *p)
{
    const char *env = getenv("STATE_DIRECTORY");
    const char *url = cfg->acme_directory ? cfg->acme_directory : AS_ACME_DEFAULT_DIRECTORY;
    char state[PATH_MAX], server[256];
    size_t n = 0;

    /* systemd gives one path per StateDirectory= entry, colon-separated:
     * ours is the first. */
    if (env && env[0] == '/') {
        size_t len = strcspn(env, ":");
        if (len >= sizeof state)
            return false;
        memcpy(state, env, len);
        state[len] = '\0';
    } else {
        strcpy(state, ACME_STATE_DEFAULT);
    }
    /* One uacme directory per ACME server: an account (and certificate)
     * of one CA means nothing to another. */
    for (const char *s = url + (strncmp(url, "https://", 8) ? 0 : 8); *s && n < sizeof server - 1; s++)
        server[n++] = isalnum((unsigned char)*s) || *s == '.' || *s == '-' ? *s : '_';
    server[n] = '\0';
    return fmt(p->dir, "%s/acme", state) && fmt(p->challenges, "%s/challenges", p->dir)
           && fmt(p->confdir, "%s/%s", p->dir, server) && fmt(p->account, "%s/account", p->confdir)
           && fmt(p->account_key, "%s/private/key.pem", p->confdir)
           && fmt(p->cert, "%s/%s/cert.pem", p->confdir, cfg->acme_domains.n ? cfg->acme_domains.v[0] : "-")
           && fmt(p->key, "%s/private/%s/key.pem", p->confdir, cfg->acme_domains.n ? cfg->acme_domains.v[0] : "-")
           && fmt(p->placeholder_cert, "%s/placeholder.pem", p->dir)
           && fmt(p->placeholder_key, "%s/placeholder.key", p->dir);
}

/* Whether a request for NAME reaches a site: a server_name, or the
 * default site. */
static bool name_served(const struct as_config *cfg, const char *name)
{
    size_t len = strlen(name);

    if (cfg->upstream.n)
        return true;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct as_strlist *l = &cfg->sites[i].server_name;
        for (size_t j = 0; j < l->n; j++) {
            const char *s = l->v[j];
            size_t sl = strlen(s);
            if (!strcmp(s, name) || (s[0] == '*' && len > sl - 1 && !strcmp(name + len - (sl - 1), s + 1)))
                return true;
        }
    }
    return false;
}

int acme_config_errors(const struct as_config *cfg)
{
    int errors = 0, line = cfg->acme_line ? cfg->acme_line : cfg->proxy_line;
    bool ssl = false, plain = false;
    struct acme_paths p;

    if (!cfg->acme) {
        if (cfg->acme_domains.n || cfg->acme_email || cfg->acme_directory)
            fprintf(stderr, "%s:%d: warning: acme is off: acme_domains, acme_email and acme_directory are not used\n",
                    cfg->path, cfg->acme_domains.n ? cfg->acme_domains.line[0]
                    : cfg->acme_email ? cfg->acme_email_line : cfg->acme_directory_line);
        return 0;
    }
    for (size_t i = 0; i < cfg->proxy_listen.n; i++) {
        if (cfg->proxy_listen_flags[i] & AS_LISTEN_SSL)
            ssl = true;
        else
            plain = true;
    }
    if (!cfg->acme_domains.n) {
        fprintf(stderr, "%s:%d: acme = on needs acme_domains (the names of the certificate)\n", cfg->path, line);
        errors++;
    }
    if (!ssl)
        fprintf(stderr, "%s:%d: warning: acme = on, but no listen has \"ssl\": the certificate is obtained, not "
                "served\n", cfg->path, line);
    if (!plain)
        fprintf(stderr, "%s:%d: warning: acme = on with no plain listen: HTTP-01 needs the ACME server to reach "
                "this proxy over plain HTTP on port 80 (a listen without ssl, or one in front of it)\n", cfg->path,
                line);
    for (size_t i = 0; i < cfg->acme_domains.n; i++) {
        if (!name_served(cfg, cfg->acme_domains.v[i])) {
            fprintf(stderr, "%s:%d: acme_domains: %s is no [site]'s server_name and there is no default site: "
                    "its challenges would be answered 421\n", cfg->path, cfg->acme_domains.line[i],
                    cfg->acme_domains.v[i]);
            errors++;
        }
    }
    if (access(ACME_CLIENT, X_OK) < 0 || access(ACME_HOOK, X_OK) < 0) {
        fprintf(stderr, "%s:%d: acme = on needs the ACME client %s and its hook %s (Debian package uacme): %s\n",
                cfg->path, line, ACME_CLIENT, ACME_HOOK, strerror(errno));
        errors++;
    }
    if (!acme_paths(cfg, &p)) {
        fprintf(stderr, "%s:%d: acme: the state directory's path is too long\n", cfg->path, line);
        errors++;
    }
    return errors;
}

static void add(struct as_config *cfg, const char *cert, const char *key)
{
    struct as_tls_pair *pairs = as_xrealloc(cfg->tls_pairs, (cfg->n_tls_pairs + 1) * sizeof *pairs);
    char *c = as_xstrdup(cert), *k = as_xstrdup(key);

    cfg->tls_pairs = pairs;
    pairs[cfg->n_tls_pairs++] = (struct as_tls_pair){ .cert = c, .key = k, .cert_line = cfg->acme_line,
                                                      .key_line = cfg->acme_line };
}

/* Started as root with [proxy] user/group, the master makes these before
 * it drops its privileges: they must be the user's, who runs the client. */
static void give(const struct as_config *cfg, const char *path)
{
    struct passwd *pw = cfg->proxy_user ? getpwnam(cfg->proxy_user) : NULL;
    struct group *gr = cfg->proxy_group ? getgrnam(cfg->proxy_group) : NULL;

    if (geteuid() != 0 || (!pw && !gr))
        return;
    if (chown(path, pw ? pw->pw_uid : (uid_t)-1, gr ? gr->gr_gid : pw ? pw->pw_gid : (gid_t)-1) < 0)
        as_warn("acme: chown %s: %s", path, strerror(errno));
}

/* mkdir -p of the directories the master writes. */
bool acme_make_dirs(const struct as_config *cfg, const struct acme_paths *p)
{
    char path[PATH_MAX];

    strcpy(path, p->dir);
    for (char *s = path + 1; ; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = '\0';
            if (mkdir(path, 0755) == 0)
                give(cfg, path);
            else if (errno != EEXIST) {
                as_err("acme: %s: %s", path, strerror(errno));
                return false;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    if (mkdir(p->challenges, 0755) == 0)
        give(cfg, p->challenges);
    else if (errno != EEXIST) {
        as_err("acme: %s: %s", p->challenges, strerror(errno));
        return false;
    }
    return true;
}

bool acme_add_pair(struct as_config *cfg, bool check_only)
{
    struct acme_paths p;
    time_t nb, na, now = time(NULL);
    bool covers;

    if (!acme_paths(cfg, &p))
        return false;
    if (access(p.key, R_OK) == 0 && acme_cert_read(p.cert, &cfg->acme_domains, &nb, &na, &covers) && covers) {
        add(cfg, p.cert, p.key);
        return true;
    }
    if (check_only)
        return true;        /* the placeholder is made at start */
    /* Only the master makes the placeholder; a serving process takes the
     * one there is. */
    if (srv.slot < 0 && (!acme_cert_read(p.placeholder_cert, &cfg->acme_domains, &nb, &na, &covers) || !covers
                         || na < now + 86400 || access(p.placeholder_key, R_OK) < 0)) {
        if (!acme_make_dirs(cfg, &p) || !acme_placeholder_make(&cfg->acme_domains, PLACEHOLDER_DAYS, p.placeholder_cert,
                                                          p.placeholder_key))
            return false;
        give(cfg, p.placeholder_cert);
        give(cfg, p.placeholder_key);
        as_info("acme: no certificate for %s yet: serving a self-signed placeholder until one is issued",
                cfg->acme_domains.v[0]);
    }
    add(cfg, p.placeholder_cert, p.placeholder_key);
    return true;
}
