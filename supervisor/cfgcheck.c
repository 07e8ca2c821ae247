/* The supervisor's own configuration checks (appstackd(8): --check and start-up
 * print every error as FILE:LINE: message). */
#include "cfgcheck.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The line of KEY in [SECTION] (or of the section header when KEY is NULL),
 * 0 when absent: the loaded config keeps no line for single-valued keys. */
static int line_of(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL, *s;
    size_t cap = 0, klen = key ? strlen(key) : 0;
    int lineno = 0, found = 0;
    bool in = false;

    if (!f)
        return 0;
    while (!found && getline(&buf, &cap, f) >= 0) {
        lineno++;
        for (s = buf; isspace((unsigned char)*s); s++)
            ;
        if (*s == '[') {
            size_t n = strlen(section);
            in = !strncmp(s + 1, section, n) && s[n + 1] == ']';
            if (in && !key)
                found = lineno;
        } else if (in && key && !strncmp(s, key, klen)) {
            for (s += klen; *s == ' ' || *s == '\t'; s++)
                ;
            if (*s == '=' || *s == ':')
                found = lineno;
        }
    }
    free(buf);
    fclose(f);
    return found;
}

static int complain(const struct as_config *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int complain(const struct as_config *c, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: ", c->path, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int check_supervisor(const struct as_config *c)
{
    int errors = 0;
    struct sockaddr_un un;

    if (!c->module) {
        int line = line_of(c->path, "app", NULL);
        errors += complain(c, line, line ? "[app] has no module (module = package.module:callable is required)"
                                         : "no [app] section: [app] module = package.module:callable is required");
    }
    if (c->listen.n == 0) {
        int line = line_of(c->path, "supervisor", NULL);
        errors += complain(c, line, "[supervisor] has no listen (e.g. listen = unix:/run/appstack/app.sock or 127.0.0.1:8000)");
    }
    if (c->listen.n > 64)
        errors += complain(c, c->listen.line[64], "listen: at most 64 addresses");
    if (c->control[0] != '/' || strlen(c->control) >= sizeof un.sun_path)
        errors += complain(c, line_of(c->path, "supervisor", "control"),
                           "control: \"%s\" must be an absolute path shorter than %zu bytes", c->control, sizeof un.sun_path);
    for (size_t i = 0; c->metrics && i < c->listen.n; i++)
        if (!strcmp(c->metrics, c->listen.v[i]))
            errors += complain(c, c->metrics_line, "metrics: %s is the app's listen address; the metrics need one of their own",
                               c->metrics);
    if (c->metrics && !strncmp(c->metrics, "unix:", 5) && !strcmp(c->metrics + 5, c->control))
        errors += complain(c, c->metrics_line, "metrics: %s is the control socket", c->metrics);
    if (c->max_requests_jitter && !c->max_requests)
        errors += complain(c, line_of(c->path, "supervisor", "max_requests_jitter"),
                           "max_requests_jitter needs max_requests");
    return errors;
}

static int load_checked(const char *path, struct as_config *cfg)
{
    struct sup_creds creds;
    struct stat st;
    int errors = as_config_load(path, cfg);

    if (stat(path, &st) < 0 || access(path, R_OK) < 0)
        return errors;  /* as_config_load said why; the rest would only repeat it */
    if (!S_ISREG(st.st_mode))
        return errors ? errors : complain(cfg, 0, "not a regular file");
    errors += check_supervisor(cfg);
    if (!sup_resolve_creds(cfg, &creds))
        errors++;
    free(creds.groups);
    return errors;
}

/* Runs LOAD with stderr going to *TEXT (malloc'ed): the loaders print their
 * FILE:LINE errors there, and glibc lets programs assign stderr. */
static int captured(int (*load)(const char *, struct as_config *), const char *path, struct as_config *cfg,
                    char **text)
{
    FILE *mem, *saved = stderr;
    size_t len;
    int n;

    *text = NULL;
    mem = open_memstream(text, &len);
    if (!mem)
        return load(path, cfg);     /* then they go to the real stderr */
    stderr = mem;
    n = load(path, cfg);
    stderr = saved;
    fclose(mem);
    return n;
}

int sup_config_load(const char *path, struct as_config *cfg, char **errors)
{
    int n;

    if (!errors)
        return load_checked(path, cfg);
    n = captured(load_checked, path, cfg, errors);
    if (!n) {
        free(*errors);
        *errors = NULL;
    }
    return n;
}

int sup_config_load_quiet(const char *path, struct as_config *cfg)
{
    char *errors;
    int n = captured(as_config_load, path, cfg, &errors);

    free(errors);
    return n;
}

static bool resolve_user(const struct as_config *c, struct sup_creds *out)
{
    struct passwd *pw;
    int n = 16;

    errno = 0;
    pw = getpwnam(c->user);
    if (!pw) {
        complain(c, line_of(c->path, "supervisor", "user"), "user: no such user \"%s\"%s%s", c->user,
                 errno ? ": " : "", errno ? strerror(errno) : "");
        return false;
    }
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    for (;;) {
        int want = n;
        out->groups = realloc(out->groups, (size_t)n * sizeof *out->groups);
        if (!out->groups) {
            complain(c, 0, "out of memory");
            return false;
        }
        if (getgrouplist(c->user, pw->pw_gid, out->groups, &n) >= 0)
            break;
        if (n <= want)
            n = want * 2;
    }
    out->n_groups = n;
    return true;
}

bool sup_resolve_creds(const struct as_config *c, struct sup_creds *out)
{
    struct group *gr;

    memset(out, 0, sizeof *out);
    out->uid = (uid_t)-1;
    out->gid = (gid_t)-1;
    if (c->user && *c->user && !resolve_user(c, out))
        return false;
    if (c->group && *c->group) {
        errno = 0;
        gr = getgrnam(c->group);
        if (!gr) {
            complain(c, line_of(c->path, "supervisor", "group"), "group: no such group \"%s\"", c->group);
            return false;
        }
        out->gid = gr->gr_gid;
    }
    if ((out->uid != (uid_t)-1 && out->uid != geteuid() && geteuid() != 0) ||
        (out->gid != (gid_t)-1 && out->gid != getegid() && geteuid() != 0)) {
        complain(c, line_of(c->path, "supervisor", c->user && *c->user ? "user" : "group"),
                 "user/group: switching to them needs appstackd to start as root");
        return false;
    }
    return true;
}
