/* supctl: sends one command to appstackd's control socket and prints the
 * answer. Exit 0 when appstackd says OK, 1 otherwise, 2 on a usage error. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfgcheck.h"
#include "ctlproto.h"
#include "instances.h"
#include "top.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: supctl [-c FILE | -a NAME | -s SOCKET] COMMAND\n"
            "Controls a running appstackd.\n\n"
            "Commands:\n"
            "  status [--json]    workers, their requests and memory; generation, uptime, totals\n"
            "  status --all [--json]\n"
            "                     the status of every instance configured in %s\n"
            "  reload             graceful reload (new code); waits until it is done\n"
            "  scale N|+K|-K      run N workers (K more, K fewer)\n"
            "  dump [ID]          Python stacks of every thread of the workers (or of worker ID),\n"
            "                     without stopping them\n"
            "  top [-d SEC] [-n N]  live view of the workers, their requests, rates and memory;\n"
            "                     q quits (plain frames when not on a terminal)\n"
            "  stop               graceful stop of appstackd\n"
            "  init DIR [...]     write the configuration of a Django project (appstack init)\n\n"
            "Options:\n"
            "  -c, --config FILE  find the control socket in FILE (default %s, or $APPSTACK_CONFIG)\n"
            "  -a, --app NAME     instance NAME (appstack@NAME): %s/NAME.ini\n"
            "  -s, --socket PATH  the control socket itself\n"
            "  -h, --help         this help\n"
            "  -V, --version      version\n",
            AS_CONFIG_DIR, AS_DEFAULT_CONFIG, AS_CONFIG_DIR);
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

/* A connection to appstackd's control socket at PATH, or -1 with the
 * reason in WHY. */
static int connect_to(const char *path, char *why, size_t len)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd;

    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(why, len, "supctl: %s: path too long for a unix socket", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, len, "supctl: socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    if (errno == ENOENT || errno == ECONNREFUSED)
        snprintf(why, len, "appstackd is not running (%s control socket at %s)",
                 errno == ENOENT ? "no" : "nothing answers on the", path);
    else if (errno == EACCES || errno == EPERM)
        snprintf(why, len, "supctl: %s: permission denied (only root and appstackd's user may use it)", path);
    else
        snprintf(why, len, "supctl: cannot connect to %s: %s", path, strerror(errno));
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

/* Prints the reply's text (to OK_OUT on OK, to stderr on ERR); returns the
 * exit code. */
static int relay(int fd, FILE *ok_out)
{
    char buf[65536];
    size_t have = 0;
    ssize_t n;
    int rc = -1;
    FILE *out = ok_out;

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
            out = rc ? stderr : ok_out;
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

int supctl_command(const char *path, const char *line, FILE *out, char *why, size_t len)
{
    int fd = connect_to(path, why, len), rc;

    if (fd < 0)
        return -1;
    /* A refused client may find the socket closed already: its answer
     * still waits to be read. */
    if (!send_all(fd, line, strlen(line)) || shutdown(fd, SHUT_WR) < 0)
        fprintf(stderr, "supctl: sending the command: %s\n", strerror(errno));
    rc = relay(fd, out);
    close(fd);
    return rc;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* One instance of status --all --json: its status object, or why not. */
static int json_instance(const struct instance *in, bool first)
{
    char why[512], *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    int rc;

    if (!mem) {
        perror("supctl");
        return 1;
    }
    rc = supctl_command(in->control, "status --json\n", mem, why, sizeof why);
    fclose(mem);
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    printf("%s\n  {\"name\": ", first ? "" : ",");
    json_str(stdout, in->name[0] ? in->name : "appstack");
    printf(", \"unit\": \"appstack%s%s.service\", \"config\": ", in->name[0] ? "@" : "", in->name);
    json_str(stdout, in->config);
    printf(", \"control\": ");
    json_str(stdout, in->control);
    if (rc == 0 && len) {
        printf(", \"running\": true, \"status\": %s}", text);
    } else {
        printf(", \"running\": false, \"error\": ");
        json_str(stdout, rc < 0 ? why : "appstackd refused the status command");
        printf("}");
    }
    free(text);
    return rc == 0 ? 0 : 1;
}

/* status --all: every instance AS_CONFIG_DIR configures, running or not.
 * Exit 1 when one of them does not answer (or there is none). */
static int status_all(bool json)
{
    struct instance *v;
    const char *err;
    size_t n = instances_list(AS_CONFIG_DIR, &v, &err);
    char why[512];
    int rc = n ? 0 : 1;

    if (!n)
        fprintf(stderr, "supctl: no app configured in %s%s%s\n", AS_CONFIG_DIR, err ? ": " : "", err ? err : "");
    if (json)
        printf("{\"instances\": [");
    for (size_t i = 0; i < n; i++) {
        if (json) {
            rc |= json_instance(&v[i], i == 0);
            continue;
        }
        printf("%s%s%s (%s)\n", i ? "\n" : "", v[i].name[0] ? "appstack@" : "appstack", v[i].name, v[i].config);
        fflush(stdout);
        if (supctl_command(v[i].control, "status\n", stdout, why, sizeof why) < 0) {
            printf("%s\n", why);
            rc = 1;
        }
    }
    if (json)
        printf("%s]}\n", n ? "\n" : "");
    instances_free(v, n);
    return fflush(stdout) == 0 ? rc : 1;
}

/* "status --all [--json]" in either order: true with *JSON set. */
static bool is_status_all(int argc, char **argv, bool *json)
{
    bool all = false;

    *json = false;
    if (argc < 2 || argc > 3 || strcmp(argv[0], "status"))
        return false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--all") && !all)
            all = true;
        else if (!strcmp(argv[i], "--json") && !*json)
            *json = true;
        else
            return false;
    }
    return all;
}

/* "supctl init ..." is "appstack init ...": the program next to supctl (as
 * installed, or in the build tree), else the one in BINDIR. supctl's -c
 * FILE and -a NAME become its -c FILE and --name NAME. */
static int exec_init(int argc, char **argv, const char *config, const char *app)
{
    char self[PATH_MAX], *prog = NULL, *slash;
    const char **args;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    int k = 0;

    if (n > 0) {
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash && asprintf(&prog, "%.*s/appstack", (int)(slash - self), self) >= 0 && access(prog, X_OK) < 0) {
            free(prog);
            prog = NULL;
        }
    }
    args = calloc((size_t)argc + 6, sizeof *args);
    if ((!prog && !(prog = strdup(BINDIR "/appstack"))) || !args) {
        perror("supctl");
        return 1;
    }
    args[k++] = "appstack";
    args[k++] = "init";
    if (config) {
        args[k++] = "-c";
        args[k++] = config;
    }
    if (app) {
        args[k++] = "--name";
        args[k++] = app;
    }
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    execv(prog, (char *const *)args);
    fprintf(stderr, "supctl: init: cannot run %s: %s\n", prog, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "app", required_argument, NULL, 'a' },
        { "socket", required_argument, NULL, 's' }, { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 }
    };
    const char *config = NULL, *sock = NULL, *app = NULL;
    char line[CTL_MAX_LINE], why[512], *path;
    bool json;
    int c, rc;

    /* "+" stops at the command, so "scale -1" is not taken for an option. */
    while ((c = getopt_long(argc, argv, "+c:a:s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'a': app = optarg; break;
        case 's': sock = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("supctl %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (app && !as_config_set_instance(app)) {
        fprintf(stderr, "supctl: -a %s: not an instance name (letters, digits, \"_\", \"-\", \".\"; "
                "not \"appstack\")\n", app);
        return 2;
    }
    if (optind < argc && !strcmp(argv[optind], "init"))
        return exec_init(argc - optind, argv + optind, config, app);
    if (optind < argc && is_status_all(argc - optind, argv + optind, &json)) {
        if (config || app || sock) {
            fprintf(stderr, "supctl: status --all looks at every instance: no -c, -a or -s with it\n");
            return 2;
        }
        return status_all(json);
    }
    if (optind < argc && !strcmp(argv[optind], "top")) {
        path = socket_path(sock, config ? config : as_config_default_path());
        if (!path) {
            perror("supctl");
            return 1;
        }
        rc = top_run(path, argc - optind, argv + optind);
        free(path);
        return rc;
    }
    if (optind >= argc || !build_command(argc - optind, argv + optind, line, sizeof line)) {
        usage(stderr);
        return 2;
    }
    path = socket_path(sock, config ? config : as_config_default_path());
    if (!path) {
        perror("supctl");
        return 1;
    }
    rc = supctl_command(path, line, stdout, why, sizeof why);
    free(path);
    if (rc < 0) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    return rc;
}
