/* The control socket that supctl talks to (protocol in ctlproto.h). All
 * connections are non-blocking and driven by the loop, so a reload that
 * takes seconds keeps its connection open without holding anything else up. */
#include "master.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlproto.h"
#include "log.h"
#include "sbuf.h"
#include "status.h"

#define CONN_TIMEOUT 10.0   /* s a client may take to send or read */

/* C_WAIT_RELOAD: subscribed to a reload (lifecycle.c) until it is done.
 * C_WAIT_DUMP: waiting for the stacks of the workers it asked (dump.c),
 * which answer within DUMP_WAIT. */
enum conn_state { C_READ, C_WAIT_RELOAD, C_WAIT_DUMP, C_WAIT_STOP, C_WRITE };

/* One worker's part of a `dump` reply. */
struct dump_part {
    struct dump_waiter dw;
    struct conn *c;
    char *head;             /* "worker N (pid P, ...)" */
    char *text;             /* its stacks, once answered */
};

struct conn {
    struct conn *next;
    struct master *m;
    enum conn_state state;
    struct waiter waiter;   /* a reload it waits for (lifecycle.c) */
    struct dump_part *parts;    /* `dump`: one per worker, in id order */
    int n_parts, n_waiting;
    int fd;
    ev_io io;
    ev_timer timer;
    char in[CTL_MAX_LINE];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
};

static void conn_close(struct conn *c)
{
    struct conn **p;

    for (p = &c->m->conns; *p && *p != c; p = &(*p)->next)
        ;
    if (*p)
        *p = c->next;
    waiter_remove(&c->waiter);
    for (int i = 0; i < c->n_parts; i++) {
        dump_cancel(&c->parts[i].dw);
        free(c->parts[i].head);
        free(c->parts[i].text);
    }
    free(c->parts);
    ev_io_stop(c->m->loop, &c->io);
    ev_timer_stop(c->m->loop, &c->timer);
    close(c->fd);
    free(c->out);
    free(c);
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(t->data);
}

static void arm_timeout(struct conn *c)
{
    ev_timer_stop(c->m->loop, &c->timer);
    ev_timer_set(&c->timer, CONN_TIMEOUT, 0);
    ev_timer_start(c->m->loop, &c->timer);
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = io->data;
    ssize_t n;

    (void)loop;
    (void)revents;
    while (c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            conn_close(c);  /* the client went away; nothing to tell it */
            return;
        }
        c->out_off += (size_t)n;
    }
    conn_close(c);
}

/* Sends "OK"/"ERR" and TEXT; takes TEXT (malloc'ed) over. */
static void reply_take(struct conn *c, bool ok, char *text)
{
    const char *head = ok ? CTL_OK : CTL_ERR;
    size_t tl = text ? strlen(text) : 0;

    c->out = malloc(strlen(head) + tl + 2);
    if (!c->out) {
        free(text);
        conn_close(c);
        return;
    }
    c->out_len = (size_t)sprintf(c->out, "%s%s%s", head, text ? text : "", tl && text[tl - 1] != '\n' ? "\n" : "");
    free(text);
    c->state = C_WRITE;
    ev_io_stop(c->m->loop, &c->io);
    ev_io_init(&c->io, write_cb, c->fd, EV_WRITE);
    c->io.data = c;
    ev_io_start(c->m->loop, &c->io);
    arm_timeout(c);
}

static void reply(struct conn *c, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reply(struct conn *c, bool ok, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    reply_take(c, ok, text);
}

/* "4" -> 4, "+2" -> target + 2, "-1" -> target - 1. */
static void cmd_scale(struct conn *c, const char *arg)
{
    struct master *m = c->m;
    long k;
    int old = lifecycle_target(m);

    if (!arg || !as_parse_long(arg[0] == '+' ? arg + 1 : arg, -AS_MAX_WORKERS, AS_MAX_WORKERS, &k)) {
        reply(c, false, "scale: expected N, +K or -K, got \"%s\"\n", arg ? arg : "");
        return;
    }
    if (arg[0] == '+' || arg[0] == '-')
        k += old;
    if (m->stopping) {
        reply(c, false, "appstackd is stopping\n");
        return;
    }
    if (!lifecycle_scale(m, (int)k)) {
        reply(c, false, "scale: %ld workers is out of range (1 to %d)\n", k, AS_MAX_WORKERS);
        return;
    }
    reply(c, true, "workers: %d -> %d\n", old, lifecycle_target(m));
}

static void reload_done(struct waiter *wt, bool ok, const char *text)
{
    reply((struct conn *)((char *)wt - offsetof(struct conn, waiter)), ok, "%s", text);
}

static void dump_reply(struct conn *c)
{
    struct sbuf b = { 0 };

    for (int i = 0; i < c->n_parts; i++)
        sbuf_printf(&b, "%s%s\n%s", i ? "\n" : "", c->parts[i].head, c->parts[i].text);
    reply_take(c, true, sbuf_take(&b));
}

static void dump_done(struct dump_waiter *dw, struct worker *w, const char *stacks, const char *missing)
{
    struct dump_part *p = (struct dump_part *)dw;   /* dw is its first member */
    struct conn *c = p->c;

    (void)w;
    if (stacks)
        p->text = strdup(stacks);
    else if (asprintf(&p->text, "no Python stacks: %s\n", missing) < 0)
        p->text = NULL;
    if (!p->text)
        p->text = strdup("");
    if (--c->n_waiting == 0)
        dump_reply(c);
}

static bool dumpable(const struct worker *w)
{
    return w->state != W_FREE && w->state != W_KILLED && w->pid > 0;
}

static int by_worker_id(const void *a, const void *b)
{
    return (*(struct worker *const *)a)->id - (*(struct worker *const *)b)->id;
}

/* "dump" (every live worker) or "dump ID": the workers' current Python
 * stacks, the workers going on as they were. */
static void cmd_dump(struct conn *c, const char *arg)
{
    struct master *m = c->m;
    struct worker *ws[AS_SCOREBOARD_SLOTS];
    int n = 0;
    long id = 0;

    if (arg && !as_parse_long(arg, 1, 1000000, &id)) {
        reply(c, false, "dump: expected a worker id, got \"%s\"\n", arg);
        return;
    }
    for (int i = 0; i < AS_SCOREBOARD_SLOTS; i++)
        if (dumpable(&m->w[i]) && (!id || m->w[i].id == id))
            ws[n++] = &m->w[i];
    if (n == 0) {
        if (id)
            reply(c, false, "dump: no worker %ld\n", id);
        else
            reply(c, true, "no workers\n");
        return;
    }
    qsort(ws, (size_t)n, sizeof *ws, by_worker_id);
    c->parts = calloc((size_t)n, sizeof *c->parts);
    if (!c->parts) {
        reply(c, false, "out of memory\n");
        return;
    }
    c->n_parts = n;
    c->state = C_WAIT_DUMP;
    ev_io_stop(m->loop, &c->io);
    ev_timer_stop(m->loop, &c->timer);
    for (int i = 0; i < n; i++) {
        struct dump_part *p = &c->parts[i];
        p->c = c;
        p->dw.done = dump_done;
        p->head = status_worker_head(ws[i]);
        if (dump_ask(ws[i], &p->dw))
            c->n_waiting++;
        else
            p->text = strdup("no Python stacks: the worker could not be asked for them\n");
    }
    if (c->n_waiting == 0)
        dump_reply(c);
}

static void dispatch(struct conn *c, char *line)
{
    char *save = NULL, *cmd = strtok_r(line, " \t\r", &save), *arg = strtok_r(NULL, " \t\r", &save);
    struct master *m = c->m;

    if (cmd && !strcmp(cmd, "status") && (!arg || !strcmp(arg, "--json"))) {
        reply_take(c, true, status_report(m, arg != NULL));
    } else if (cmd && !strcmp(cmd, "top") && !arg) {
        reply_take(c, true, status_top(m));
    } else if (cmd && !strcmp(cmd, "scale")) {
        cmd_scale(c, arg);
    } else if (cmd && !strcmp(cmd, "reload") && !arg) {
        if (m->stopping) {
            reply(c, false, "appstackd is stopping\n");
            return;
        }
        c->state = C_WAIT_RELOAD;   /* before lifecycle_reload, which may answer at once */
        ev_io_stop(m->loop, &c->io);
        ev_timer_stop(m->loop, &c->timer);
        c->waiter.done = reload_done;
        lifecycle_reload(m, &c->waiter);
    } else if (cmd && !strcmp(cmd, "dump")) {
        cmd_dump(c, arg);
    } else if (cmd && !strcmp(cmd, "stop") && !arg) {
        c->state = C_WAIT_STOP;
        ev_io_stop(m->loop, &c->io);
        ev_timer_stop(m->loop, &c->timer);
        lifecycle_stop(m, false);
    } else {
        reply(c, false, "unknown command \"%s%s%s\" (known: status [--json], reload, scale N|+K|-K, dump [ID], stop)\n",
              cmd ? cmd : "", arg ? " " : "", arg ? arg : "");
    }
}

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = io->data;
    ssize_t n;
    char *nl;

    (void)loop;
    (void)revents;
    n = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    nl = strchr(c->in, '\n');
    if (nl) {
        *nl = '\0';
        dispatch(c, c->in);
    } else if (c->in_len == sizeof c->in - 1) {
        reply(c, false, "command longer than %d bytes\n", CTL_MAX_LINE - 2);
    }
}

/* SO_PEERCRED: the socket's mode already keeps others out; this holds even
 * if someone loosens it. */
static bool peer_allowed(int fd, struct ucred *cred)
{
    socklen_t len = sizeof *cred;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0) {
        as_warn("control socket: SO_PEERCRED: %s", strerror(errno));
        return false;
    }
    return cred->uid == 0 || cred->uid == getuid();
}

static void refuse(int fd, const struct ucred *cred)
{
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%spermission denied: uid %u may not use appstackd's control socket "
                     "(only root and uid %u)\n", CTL_ERR, (unsigned)cred->uid, (unsigned)getuid());

    as_warn("control socket: refused uid %u (pid %d)", (unsigned)cred->uid, (int)cred->pid);
    if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        as_debug("control socket: could not tell the refused client: %s", strerror(errno));
    close(fd);
}

static void accept_one(struct master *m, int fd)
{
    struct ucred cred;
    struct conn *c;

    if (!peer_allowed(fd, &cred)) {
        refuse(fd, &cred);
        return;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        as_err("control socket: out of memory");
        close(fd);
        return;
    }
    c->m = m;
    c->fd = fd;
    c->next = m->conns;
    m->conns = c;
    ev_io_init(&c->io, read_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(m->loop, &c->io);
    ev_init(&c->timer, conn_timeout_cb);
    c->timer.data = c;
    arm_timeout(c);
}

static long count_conns(const struct master *m)
{
    long n = 0;

    for (const struct conn *c = m->conns; c; c = c->next)
        n++;
    return n;
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct master *m = io->data;
    int fd;

    (void)revents;
    for (;;) {
        fd = accept4(m->control_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            accept_one(m, fd);
            continue;
        }
        if (as_accept_rest_failed(loop, &m->control_rest, errno, count_conns(m)) != AS_ACCEPT_AGAIN)
            return;
    }
}

/* mkdir -p of the socket's directory (e.g. /run/appstack). */
static bool make_parent(const char *path)
{
    char dir[PATH_MAX];

    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            as_err("control socket: cannot create %s: %s", dir, strerror(errno));
            return false;
        }
        *p = '/';
    }
    return true;
}

/* A socket file nobody answers on is stale; one that answers belongs to a
 * running appstackd, which we must not steal it from. */
static bool remove_stale(const struct sockaddr_un *sa)
{
    struct stat st;
    int fd;
    bool alive;

    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT || (as_err("control socket %s: %s", sa->sun_path, strerror(errno)), false);
    if (!S_ISSOCK(st.st_mode)) {
        as_err("control socket %s: the file exists and is not a socket", sa->sun_path);
        return false;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        as_err("control socket: socket: %s", strerror(errno));
        return false;
    }
    alive = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;
    close(fd);
    if (alive) {
        as_err("control socket %s: another appstackd is running and answers on it", sa->sun_path);
        return false;
    }
    if (unlink(sa->sun_path) < 0) {
        as_err("control socket %s: cannot remove the stale socket: %s", sa->sun_path, strerror(errno));
        return false;
    }
    return true;
}

static bool bind_private(int fd, const struct sockaddr_un *sa)
{
    mode_t old = umask(0177);   /* born 0600: no window in which others may connect */
    int r = bind(fd, (const struct sockaddr *)sa, sizeof *sa);

    umask(old);
    if (r < 0 || chmod(sa->sun_path, 0600) < 0 || listen(fd, 64) < 0) {
        as_err("control socket %s: %s", sa->sun_path, strerror(errno));
        return false;
    }
    return true;
}

bool control_open(struct master *m)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", m->cfg.control);
    if (!make_parent(sa.sun_path) || !remove_stale(&sa))
        return false;
    m->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (m->control_fd < 0) {
        as_err("control socket: socket: %s", strerror(errno));
        return false;
    }
    if (!bind_private(m->control_fd, &sa)) {
        close(m->control_fd);
        m->control_fd = -1;
        return false;
    }
    ev_io_init(&m->control_w, accept_cb, m->control_fd, EV_READ);
    m->control_w.data = m;
    ev_io_start(m->loop, &m->control_w);
    as_accept_rest_init(&m->control_rest, &m->control_w, 1);
    return true;
}

void control_close(struct master *m)
{
    while (m->conns)
        conn_close(m->conns);
    if (m->control_fd < 0)
        return;
    as_accept_rest_stop(m->loop, &m->control_rest);
    close(m->control_fd);
    m->control_fd = -1;
    if (unlink(m->cfg.control) < 0 && errno != ENOENT)
        as_warn("cannot remove control socket %s: %s", m->cfg.control, strerror(errno));
}

/* The loop has ended: answer `stop` with blocking writes, the last thing
 * appstackd does. */
void control_stop_done(struct master *m)
{
    static const char msg[] = CTL_OK "stopped\n";

    for (struct conn *c = m->conns; c; c = c->next)
        if (c->state == C_WAIT_STOP && send(c->fd, msg, sizeof msg - 1, MSG_NOSIGNAL) < 0)
            as_debug("could not answer stop: %s", strerror(errno));
}
