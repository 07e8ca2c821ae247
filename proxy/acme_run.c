/* The ACME client, run by the master (acme.h): when to run uacme, running
 * it with its output in the log, and what follows its exit: a reload that
 * installs the new certificate, or a failure that STATUS= and the log say,
 * retried later.
 *
 * The master looks at the certificate (in a short-lived child: the master
 * does not use OpenSSL) at start, after each run, on HUP and SIGUSR1 (what
 * appstack-acme.timer sends), and at least every 12 hours. It is due when
 * it is missing, names other hosts than acme_domains, or has less than a
 * third of its life left (30 days of Let's Encrypt's 90, as certbot and
 * Let's Encrypt advise). Then the client runs: once per account
 * `uacme new` (or `update` when acme_email changed), then `uacme issue`
 * with uacme's own HTTP-01 hook writing into the challenge directory. */
#include "acme.h"
#include "master.h"
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_EVERY (12 * 3600.0)
#define BACKOFF_FIRST 300.0     /* after a failure; doubles up to BACKOFF_MAX: Let's Encrypt */
#define BACKOFF_MAX 3600.0      /* allows 5 failed validations per name and hour */
#define RUN_LIMIT 600.0         /* s one run of the client may take */

enum step { STEP_NONE, STEP_ACCOUNT, STEP_UPDATE, STEP_ISSUE };

static struct {
    pid_t pid;
    enum step step;
    int out;                    /* the client's stdout and stderr */
    ev_io out_w;
    ev_timer limit_w;
    char line[512];             /* being read */
    size_t len;
    char last[256];             /* the client's last line: why it failed */
    ev_tstamp next;             /* when to look at the certificate again */
    double backoff;
    bool again;                 /* poked during a run: look again after it */
    bool forced;                /* the run replaces a certificate uacme would keep */
    bool stopping;              /* the proxy stops: a run that ends is not a failure */
    char status[400];
    struct acme_paths p;        /* of the run */
} a = { .out = -1, .backoff = BACKOFF_FIRST };

static const struct as_config *cfg(void)
{
    return &srv.rt->cfg;
}

static const char *server(void)
{
    return cfg()->acme_directory ? cfg()->acme_directory : AS_ACME_DEFAULT_DIRECTORY;
}

static const char *date(time_t t)
{
    static char buf[32];
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
}

/* The client's last line, cut to what STATUS= can carry. */
static void remember(const char *line)
{
    size_t n = strlen(line);

    if (n >= sizeof a.last)
        n = sizeof a.last - 1;
    memcpy(a.last, line, n);
    a.last[n] = '\0';
}

static void read_output(bool to_eof)
{
    char buf[4096];
    ssize_t n;

    while ((n = read(a.out, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (a.len < sizeof a.line - 1)
                    a.line[a.len++] = buf[i];
                continue;
            }
            a.line[a.len] = '\0';
            if (a.len) {
                const char *l = strncmp(a.line, "uacme: ", 7) ? a.line : a.line + 7;
                as_debug("acme: %s", l);
                remember(l);
            }
            a.len = 0;
        }
    }
    if (to_eof && a.len) {
        a.line[a.len] = '\0';
        as_debug("acme: %s", a.line);
        remember(a.line);
        a.len = 0;
    }
}

static void out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    read_output(false);
}

static void limit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    as_err("acme: %s still running after %gs: stopping it", ACME_CLIENT, RUN_LIMIT);
    kill(a.pid, SIGTERM);
}

static bool start(enum step step)
{
    const struct as_config *c = cfg();
    const char **argv = calloc(24 + c->acme_domains.n, sizeof *argv);
    int n = 0, out[2];
    pid_t pid;

    if (!argv) {
        as_err("acme: out of memory");
        return false;
    }

    argv[n++] = ACME_CLIENT;
    argv[n++] = "-v";
    argv[n++] = "-c";
    argv[n++] = a.p.confdir;
    argv[n++] = "-a";
    argv[n++] = server();
    if (step == STEP_ACCOUNT) {
        argv[n++] = "-y";       /* the CA's terms: accepted by setting acme = on */
        argv[n++] = "-t";
        argv[n++] = "EC";
        argv[n++] = "new";
    } else if (step == STEP_UPDATE) {
        argv[n++] = "update";
    } else {
        argv[n++] = "-h";
        argv[n++] = ACME_HOOK;
        argv[n++] = "-t";       /* ECDSA P-256: the faster handshakes */
        argv[n++] = "EC";
        argv[n++] = "-o";       /* no OCSP: Let's Encrypt has none any more */
        if (a.forced)
            argv[n++] = "-f";
        argv[n++] = "issue";
        for (size_t i = 0; i < c->acme_domains.n; i++)
            argv[n++] = c->acme_domains.v[i];
    }
    if (step != STEP_ISSUE && c->acme_email)
        argv[n++] = c->acme_email;
    argv[n] = NULL;
    if (pipe2(out, O_CLOEXEC) < 0) {
        as_err("acme: pipe: %s", strerror(errno));
        free(argv);
        return false;
    }
    pid = fork();
    if (pid == 0) {
        sigset_t none;
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
            _exit(127);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        setenv("UACME_CHALLENGE_PATH", a.p.challenges, 1);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        execv(ACME_CLIENT, (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", ACME_CLIENT, strerror(errno));
        _exit(127);
    }
    free(argv);
    close(out[1]);
    if (pid < 0) {
        as_err("acme: fork: %s", strerror(errno));
        close(out[0]);
        return false;
    }
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    a.pid = pid;
    a.step = step;
    a.out = out[0];
    a.len = 0;
    a.last[0] = '\0';
    ev_io_set(&a.out_w, a.out, EV_READ);
    ev_io_start(srv.loop, &a.out_w);
    ev_timer_set(&a.limit_w, RUN_LIMIT, 0);
    ev_timer_start(srv.loop, &a.limit_w);
    as_info("acme: %s for %s from %s", step == STEP_ACCOUNT ? "creating an account" : step == STEP_UPDATE
            ? "updating the account's email" : a.forced ? "renewing the certificate" : "requesting a certificate",
            c->acme_domains.v[0], server());
    return true;
}

/* acme_cert_read for the master, which does not touch OpenSSL (its pages
 * would stay resident in it: tls_check.c): a short-lived child reads the
 * certificate and sends back what it found. A few times a day at most. */
static bool cert_read(const char *path, const struct as_strlist *names, time_t *not_before, time_t *not_after,
                      bool *covers)
{
    struct { bool ok, covers; time_t nb, na; } r = { 0 };
    int fds[2], st;
    pid_t pid;
    ssize_t n;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        as_err("acme: reading %s: pipe: %s", path, strerror(errno));
        return false;
    }
    pid = fork();
    if (pid == 0) {
        r.ok = acme_cert_read(path, names, &r.nb, &r.na, &r.covers);
        _exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    if (pid < 0) {
        as_err("acme: reading %s: fork: %s", path, strerror(errno));
        close(fds[0]);
        return false;
    }
    do
        n = read(fds[0], &r, sizeof r);
    while (n < 0 && errno == EINTR);
    close(fds[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof r || !r.ok)
        return false;
    *not_before = r.nb;
    *not_after = r.na;
    *covers = r.covers;
    return true;
}

/* The status line, as what the certificate is, plus WHY the last attempt
 * failed, if it did. */
static void set_status(const char *why)
{
    time_t nb, na;
    bool covers, have = cert_read(a.p.cert, &cfg()->acme_domains, &nb, &na, &covers) && covers;
    int n = have ? snprintf(a.status, sizeof a.status, "certificate valid until %s", date(na))
                 : snprintf(a.status, sizeof a.status, "no certificate yet (self-signed placeholder)");

    if (why && n > 0 && (size_t)n < sizeof a.status)
        snprintf(a.status + n, sizeof a.status - (size_t)n, "; ACME failed at %s: %s", date(time(NULL)), why);
    master_status_now();
}

static void failed(void)
{
    const char *why = a.last[0] ? a.last : "no reason given";

    as_err("acme: no certificate for %s from %s: %s; next attempt in %g minutes", cfg()->acme_domains.v[0],
           server(), why, a.backoff / 60);
    a.next = ev_now(srv.loop) + a.backoff;
    a.backoff = a.backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : a.backoff * 2;
    set_status(why);
}

static void write_account(void)
{
    FILE *f = fopen(a.p.account, "we");

    if (!f || fprintf(f, "%s\n", cfg()->acme_email ? cfg()->acme_email : "") < 0 || fclose(f) != 0)
        as_warn("acme: %s: %s", a.p.account, strerror(errno));
}

/* The account step a run starts with, or STEP_ISSUE when the account is
 * known to work with this email. */
static enum step account_step(void)
{
    char got[512] = "";
    FILE *f = fopen(a.p.account, "re");
    const char *want = cfg()->acme_email ? cfg()->acme_email : "";

    if (!f)
        return STEP_ACCOUNT;
    if (!fgets(got, sizeof got, f))
        got[0] = '\0';
    fclose(f);
    got[strcspn(got, "\n")] = '\0';
    return strcmp(got, want) ? STEP_UPDATE : STEP_ISSUE;
}

static void look(void)
{
    const struct as_config *c = cfg();
    time_t nb, na, now = time(NULL);
    bool covers, have;

    if (!acme_paths(c, &a.p))
        return;
    have = access(a.p.key, R_OK) == 0 && cert_read(a.p.cert, &c->acme_domains, &nb, &na, &covers);
    if (have && covers) {
        time_t renew_at = na - (na - nb) / 3;
        if (now < renew_at) {
            double wait = (double)(renew_at - now);
            a.next = ev_now(srv.loop) + (wait < CHECK_EVERY ? wait : CHECK_EVERY);
            set_status(NULL);
            return;
        }
    }
    a.forced = have;    /* uacme keeps a certificate it finds current: this one is due or for other names */
    if (!acme_make_dirs(c, &a.p) || !start(account_step())) {
        snprintf(a.last, sizeof a.last, "cannot run %s (see above)", ACME_CLIENT);
        failed();
    }
}

static void issued(void)
{
    time_t nb, na;
    bool covers;

    if (account_step() != STEP_ISSUE)
        write_account();        /* issuing proved the account */
    a.backoff = BACKOFF_FIRST;
    if (cert_read(a.p.cert, &cfg()->acme_domains, &nb, &na, &covers))
        as_info("acme: new certificate for %s from %s, valid until %s: reloading", cfg()->acme_domains.v[0], server(),
                date(na));
    set_status(NULL);
    a.next = 0;                 /* schedule from the new certificate */
    master_reload();
}

bool acme_child_exited(pid_t pid, int st)
{
    enum step step;
    int code;

    if (!pid || pid != a.pid)
        return false;
    read_output(true);
    ev_io_stop(srv.loop, &a.out_w);
    ev_timer_stop(srv.loop, &a.limit_w);
    close(a.out);
    a.out = -1;
    a.pid = 0;
    code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    step = a.stopping ? STEP_NONE : a.step;
    a.step = STEP_NONE;         /* what follows may start the next one */
    switch (step) {
    case STEP_ACCOUNT:
    case STEP_UPDATE:
        if (code == 0)
            write_account();
        else
            as_warn("acme: the account step failed (status %d)%s", code,
                    access(a.p.account_key, R_OK) == 0 ? "; trying the certificate with the account key there is"
                                                       : "");
        if ((code == 0 || access(a.p.account_key, R_OK) == 0) && start(STEP_ISSUE))
            return true;
        failed();
        break;
    case STEP_ISSUE:
        if (code == 0)
            issued();
        else if (code == 1)     /* uacme found it current after all */
            set_status(NULL);
        else
            failed();
        break;
    case STEP_NONE:
        break;
    }
    if (a.again) {
        a.again = false;
        a.next = 0;
    }
    return true;
}

void acme_start(void)
{
    ev_init(&a.out_w, out_cb);
    ev_init(&a.limit_w, limit_cb);
    a.next = 0;
    acme_tick();
}

void acme_tick(void)
{
    if (!cfg()->acme) {
        a.status[0] = '\0';
        return;
    }
    if (a.pid || ev_now(srv.loop) < a.next)
        return;
    look();
}

void acme_poke(bool new_config)
{
    if (new_config)
        a.backoff = BACKOFF_FIRST;
    if (a.pid) {
        a.again = true;
        return;
    }
    a.next = 0;
    acme_tick();
}

void acme_stop(void)
{
    a.stopping = true;
    if (a.pid)
        kill(a.pid, SIGTERM);
}

void acme_forget(void)
{
    ev_io_stop(srv.loop, &a.out_w);
    ev_timer_stop(srv.loop, &a.limit_w);
    if (a.out >= 0)
        close(a.out);
    a.out = -1;
    a.pid = 0;
}

const char *acme_status(void)
{
    return a.status;
}
