/* supctl top: a live view of appstackd's workers, like top(1), over the
 * control socket only ("top" command, ctlproto.h). Each refresh asks for
 * one snapshot; rates (requests, errors, CPU) are the differences between
 * two. On a terminal the screen is redrawn in place (the alternate screen,
 * VT100 sequences every terminal emulator knows) and a key press is read
 * without Enter: q quits. Elsewhere (a pipe, a file) frames are plain
 * text, one after the other: by default one, taken over one delay. */
#include "top.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TOP_MAX_WORKERS 1024

struct top_worker {
    int id, pid;
    unsigned generation;
    char state[16];
    unsigned long long requests, errors;
    long long rss;
    double cpu;                 /* s, -1 unknown */
    double age;                 /* s, -1 idle */
    char method[24], rid[72], path[256];
};

struct top_snap {
    int pid;
    double uptime, now;
    unsigned generation;
    int ready, target;
    unsigned long long requests, errors, reloads_ok, reloads_failed;
    int reloading, stopping;
    long queue;
    char restarts[160];
    struct top_worker w[TOP_MAX_WORKERS];
    int n;
};

static struct {
    bool tty;
    struct termios saved;
    bool raw;
} term;

static volatile sig_atomic_t quit_signal;

static void on_signal(int sig)
{
    quit_signal = sig;
}

/* Splits LINE at tabs into at most MAX fields; returns how many. */
static int split(char *line, char **f, int max)
{
    int n = 0;

    while (n < max) {
        f[n++] = line;
        line = strchr(line, '\t');
        if (!line)
            break;
        *line++ = '\0';
    }
    return n;
}

static bool parse(char *text, struct top_snap *s)
{
    char *save = NULL, *line, *f[16];

    memset(s, 0, sizeof *s);
    s->pid = -1;
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int n = split(line, f, 16);
        if (!strcmp(f[0], "appstackd") && n >= 15) {
            s->pid = atoi(f[1]);
            s->uptime = atof(f[2]);
            s->now = atof(f[3]);
            s->generation = (unsigned)strtoul(f[4], NULL, 10);
            s->ready = atoi(f[5]);
            s->target = atoi(f[6]);
            s->requests = strtoull(f[7], NULL, 10);
            s->errors = strtoull(f[8], NULL, 10);
            s->reloading = atoi(f[9]);
            s->stopping = atoi(f[10]);
            s->queue = atol(f[11]);
            snprintf(s->restarts, sizeof s->restarts, "%s", f[12]);
            s->reloads_ok = strtoull(f[13], NULL, 10);
            s->reloads_failed = strtoull(f[14], NULL, 10);
        } else if (!strcmp(f[0], "worker") && n >= 13 && s->n < TOP_MAX_WORKERS) {
            struct top_worker *w = &s->w[s->n++];
            w->id = atoi(f[1]);
            w->pid = atoi(f[2]);
            w->generation = (unsigned)strtoul(f[3], NULL, 10);
            snprintf(w->state, sizeof w->state, "%s", f[4]);
            w->requests = strtoull(f[5], NULL, 10);
            w->errors = strtoull(f[6], NULL, 10);
            w->rss = atoll(f[7]);
            w->cpu = atof(f[8]);
            w->age = strcmp(f[9], "-") ? atof(f[9]) : -1;
            snprintf(w->method, sizeof w->method, "%s", f[10]);
            snprintf(w->rid, sizeof w->rid, "%s", f[11]);
            snprintf(w->path, sizeof w->path, "%s", f[12]);
        }
    }
    return s->pid > 0;
}

/* One snapshot from appstackd; false with WHY when it cannot be had. */
static bool sample(const char *path, struct top_snap *s, char *why, size_t len)
{
    char *text = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&text, &n);
    int rc;

    if (!mem) {
        snprintf(why, len, "supctl: %s", strerror(errno));
        return false;
    }
    rc = supctl_command(path, "top\n", mem, why, len);
    fclose(mem);
    if (rc == 0 && !parse(text, s)) {
        snprintf(why, len, "supctl: appstackd does not know the top command (an older version?)");
        rc = 1;
    } else if (rc > 0) {
        snprintf(why, len, "supctl: appstackd refused the top command");
    }
    free(text);
    return rc == 0;
}

static const struct top_worker *find(const struct top_snap *s, int pid)
{
    for (int i = 0; s && i < s->n; i++)
        if (s->w[i].pid == pid)
            return &s->w[i];
    return NULL;
}

static void duration(char *buf, size_t n, double s)
{
    if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else if (s < 86400)
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
    else
        snprintf(buf, n, "%dd%02dh", (int)s / 86400, (int)s % 86400 / 3600);
}

/* Writes one frame: lines cut to COLS (0 = no limit), at most ROWS lines
 * (0 = no limit); on a terminal each line also clears its rest. */
struct frame {
    int cols, rows, line;
    bool tty;
};

static void put(struct frame *fr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct frame *fr, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    if (fr->rows && fr->line >= fr->rows)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    if (fr->cols && n > fr->cols)
        n = fr->cols;
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    fwrite(buf, 1, (size_t)n, stdout);
    fputs(fr->tty ? "\x1b[K\n" : "\n", stdout);
    fr->line++;
}

static void draw(const struct top_snap *s, const struct top_snap *prev, struct frame *fr)
{
    double dt = prev ? s->now - prev->now : 0;
    char up[32], rate[32], err[32], queue[24];
    unsigned long long dreq = prev && s->requests >= prev->requests ? s->requests - prev->requests : 0;
    unsigned long long derr = prev && s->errors >= prev->errors ? s->errors - prev->errors : 0;

    duration(up, sizeof up, s->uptime);
    if (dt > 0) {
        snprintf(rate, sizeof rate, "%.1f req/s", (double)dreq / dt);
        snprintf(err, sizeof err, "%.1f err/s (%.1f%%)", (double)derr / dt, dreq ? 100.0 * (double)derr / (double)dreq : 0);
    } else {
        snprintf(rate, sizeof rate, "- req/s");
        snprintf(err, sizeof err, "- err/s");
    }
    if (s->queue >= 0)
        snprintf(queue, sizeof queue, "%ld", s->queue);
    else
        snprintf(queue, sizeof queue, "-");
    put(fr, "appstackd %d up %s, generation %u, %d/%d workers ready%s%s%s", s->pid, up, s->generation, s->ready,
        s->target, s->reloading ? ", reloading" : "", s->stopping ? ", stopping" : "", fr->tty ? "   (q quits)" : "");
    put(fr, "requests %llu, %s, errors %llu (5xx), %s, listen queue %s", s->requests, rate, s->errors, err, queue);
    put(fr, "restarts: %s; reloads: %llu ok, %llu failed", s->restarts, s->reloads_ok, s->reloads_failed);
    put(fr, "%s", "");
    put(fr, "%4s %8s %4s %-9s %9s %6s %8s %5s %7s  %s", "ID", "PID", "GEN", "STATE", "REQUESTS", "REQ/S", "RSS(MB)",
        "CPU%", "AGE", "REQUEST");
    for (int i = 0; i < s->n; i++) {
        const struct top_worker *w = &s->w[i], *p = find(prev, w->pid);
        char rps[16] = "-", cpu[16] = "-", rss[16] = "-", age[16] = "", req[400] = "";
        if (p && dt > 0) {
            snprintf(rps, sizeof rps, "%.1f", (double)(w->requests - p->requests) / dt);
            if (w->cpu >= 0 && p->cpu >= 0)
                snprintf(cpu, sizeof cpu, "%.0f", w->cpu > p->cpu ? 100 * (w->cpu - p->cpu) / dt : 0.0);
        }
        if (w->rss >= 0)
            snprintf(rss, sizeof rss, "%.1f", (double)w->rss / (1 << 20));
        if (w->age >= 0) {
            snprintf(age, sizeof age, "%.1fs", w->age);
            snprintf(req, sizeof req, "%s %s%s%s", w->method, w->path, strcmp(w->rid, "-") ? "  id " : "",
                     strcmp(w->rid, "-") ? w->rid : "");
        }
        put(fr, "%4d %8d %4u %-9s %9llu %6s %8s %5s %7s  %s", w->id, w->pid, w->generation, w->state, w->requests,
            rps, rss, cpu, age, req);
    }
}

static void restore_terminal(void)
{
    if (!term.tty)
        return;
    fputs("\x1b[?25h\x1b[?1049l", stdout);     /* cursor back, main screen back */
    fflush(stdout);
    if (term.raw)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &term.saved);
    term.tty = false;
}

static void setup_terminal(void)
{
    struct termios t;
    struct sigaction sa = { .sa_handler = on_signal };

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    term.tty = true;
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &term.saved) == 0) {
        t = term.saved;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        term.raw = tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0;
    }
    fputs("\x1b[?1049h\x1b[?25l", stdout);     /* alternate screen, no cursor */
    atexit(restore_terminal);
}

/* Waits DELAY s for a key: true when it was q (or Q), or a signal came. */
static bool wait_key(double delay)
{
    struct timespec t0, t1;
    double left = delay;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (left > 0 && !quit_signal) {
        struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
        int r = poll(&p, term.raw ? 1 : 0, (int)(left * 1000) + 1);
        if (r > 0) {
            char ch;
            ssize_t n = read(STDIN_FILENO, &ch, 1);
            if (n == 1 && (ch == 'q' || ch == 'Q'))
                return true;
            if (n == 0)
                term.raw = false;   /* end of input: only the delay counts now */
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        left = delay - ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    return quit_signal != 0;
}

/* Without a terminal: just the delay. True when a signal came. */
static bool sleep_for(double delay)
{
    struct timespec ts = { (time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9) };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !quit_signal)
        ;
    return quit_signal != 0;
}

static bool parse_args(int argc, char **argv, double *delay, long *iterations)
{
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            *delay = strtod(argv[++i], &end);
            if (*end || !(*delay >= 0.1 && *delay <= 3600))
                return false;
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            *iterations = strtol(argv[++i], &end, 10);
            if (*end || *iterations < 1)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

int top_run(const char *path, int argc, char **argv)
{
    static struct top_snap snaps[2];
    struct top_snap *cur = &snaps[0], *prev = NULL;
    double delay = 1.0;
    long iterations = 0, frames = 0;
    char why[512];
    bool tty = isatty(STDOUT_FILENO);

    if (!parse_args(argc, argv, &delay, &iterations)) {
        fprintf(stderr, "usage: supctl top [-d SECONDS] [-n FRAMES]\n");
        return 2;
    }
    if (!sample(path, cur, why, sizeof why)) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    if (!tty && !iterations)
        iterations = 1;     /* a script wants a snapshot, with rates over one delay */
    if (tty)
        setup_terminal();
    for (;;) {
        struct winsize ws = { 0 };
        struct frame fr = { .tty = tty };

        if (tty) {
            if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
                fr.cols = ws.ws_col;
                fr.rows = ws.ws_row;
            }
            fputs("\x1b[H", stdout);
        }
        if (tty || prev) {
            draw(cur, prev, &fr);
            frames++;
            if (tty)
                fputs("\x1b[J", stdout);
            else if (!iterations || frames < iterations)
                putchar('\n');
            if (fflush(stdout) != 0)
                return 1;
        }
        if (iterations && frames >= iterations)
            break;
        if (tty ? wait_key(delay) : sleep_for(delay))
            break;
        prev = cur;
        cur = cur == &snaps[0] ? &snaps[1] : &snaps[0];
        if (!sample(path, cur, why, sizeof why)) {
            restore_terminal();
            fprintf(stderr, "%s\n", why);
            return 1;
        }
    }
    restore_terminal();
    return 0;
}
