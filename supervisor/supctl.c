/* supctl: sends one command to appstackd's control socket and prints the
 * answer. Exit 0 when appstackd says OK, 1 otherwise, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfgcheck.h"
#include "ctlproto.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: supctl [-c FILE | -s SOCKET] COMMAND\n"
            "Controls a running appstackd.\n\n"
            "Commands:\n"
            "  status [--json]    workers, their requests and memory; generation, uptime, totals\n"
            "  reload             graceful reload (new code); waits until it is done\n"
            "  scale N|+K|-K      run N workers (K more, K fewer)\n"
            "  dump [ID]          Python stacks of every thread of the workers (or of worker ID),\n"
            "                     without stopping them\n"
            "  stop               graceful stop of appstackd\n\n"
            "Options:\n"
            "  -c, --config FILE  find the control socket in FILE (default %s, or $APPSTACK_CONFIG)\n"
            "  -s, --socket PATH  the control socket itself\n"
            "  -h, --help         this help\n"
            "  -V, --version      version\n",
            AS_DEFAULT_CONFIG);
}

/* The control socket's path: -s, else [supervisor] control of the config
 * (its built-in default when the file has none or cannot be read). */
static char *socket_path(const char *sock, const char *config)
{
    struct as_config cfg;
    char *path;

    if (sock)
        return strdup(sock);
    sup_config_load_quiet(config, &cfg);
    path = strdup(cfg.control);
    as_config_free(&cfg);
    return path;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "supctl: %s: path too long for a unix socket\n", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "supctl: socket: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (errno == ENOENT || errno == ECONNREFUSED)
        fprintf(stderr, "appstackd is not running (%s control socket at %s)\n",
                errno == ENOENT ? "no" : "nothing answers on the", path);
    else if (errno == EACCES || errno == EPERM)
        fprintf(stderr, "supctl: %s: permission denied (only root and appstackd's user may use it)\n", path);
    else
        fprintf(stderr, "supctl: cannot connect to %s: %s\n", path, strerror(errno));
    close(fd);
    return -1;
}

static bool send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return false;
        s += k;
        n -= (size_t)k;
    }
    return true;
}

/* Prints the reply's text (stdout on OK, stderr on ERR); returns the exit code. */
static int relay(int fd)
{
    char buf[65536];
    size_t have = 0;
    ssize_t n;
    int rc = -1;
    FILE *out = stdout;

    while ((n = read(fd, buf + have, sizeof buf - have)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "supctl: reading the reply: %s\n", strerror(errno));
            return 1;
        }
        have += (size_t)n;
        if (rc < 0) {
            char *nl = memchr(buf, '\n', have);
            if (!nl && have < sizeof buf)
                continue;
            rc = nl && !strncmp(buf, CTL_OK, strlen(CTL_OK)) ? 0 : 1;
            out = rc ? stderr : stdout;
            have -= nl ? (size_t)(nl + 1 - buf) : 0;
            memmove(buf, nl ? nl + 1 : buf, have);
        }
        fwrite(buf, 1, have, out);
        have = 0;
    }
    if (rc < 0) {
        fprintf(stderr, "supctl: appstackd closed the connection without an answer\n");
        return 1;
    }
    return fflush(out) == 0 ? rc : 1;
}

/* The command line as one protocol line; checks the words a little so that
 * a typo gets the usage, not a round trip. */
static bool build_command(int argc, char **argv, char *line, size_t len)
{
    const char *cmd = argv[0];
    int want = 0;

    if (!strcmp(cmd, "status"))
        want = argc == 2 && !strcmp(argv[1], "--json") ? 1 : 0;
    else if (!strcmp(cmd, "scale"))
        want = 1;
    else if (!strcmp(cmd, "dump"))
        want = argc == 2 ? 1 : 0;
    else if (strcmp(cmd, "reload") && strcmp(cmd, "stop"))
        return false;
    if (argc != want + 1)
        return false;
    snprintf(line, len, "%s%s%s\n", cmd, want ? " " : "", want ? argv[1] : "");
    return true;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 }
    };
    const char *config = as_config_default_path(), *sock = NULL;
    char line[CTL_MAX_LINE], *path;
    int c, fd, rc;

    /* "+" stops at the command, so "scale -1" is not taken for an option. */
    while ((c = getopt_long(argc, argv, "+c:s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 's': sock = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("supctl %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || !build_command(argc - optind, argv + optind, line, sizeof line)) {
        usage(stderr);
        return 2;
    }
    path = socket_path(sock, config);
    if (!path) {
        perror("supctl");
        return 1;
    }
    fd = connect_to(path);
    free(path);
    if (fd < 0)
        return 1;
    /* A refused client may find the socket closed already: its answer
     * still waits to be read. */
    if (!send_all(fd, line, strlen(line)) || shutdown(fd, SHUT_WR) < 0)
        fprintf(stderr, "supctl: sending the command: %s\n", strerror(errno));
    rc = relay(fd);
    close(fd);
    return rc;
}
