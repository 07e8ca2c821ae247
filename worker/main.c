/* appstack-worker: one worker process. Started by appstackd (see
 * common/scoreboard.h for the contract) or by hand for debugging, when it
 * binds the [supervisor] listen addresses itself. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"

struct wk_worker W;
struct wk_request wk_loop_request;
__thread struct wk_request *wk_thread_request = &wk_loop_request;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: appstack-worker [-c FILE]\n"
            "Serves the [app] of the appstack config over HTTP/1.1 with embedded Python.\n"
            "Normally started by appstackd; run by hand it binds the [supervisor] listen\n"
            "addresses itself and logs to stderr.\n\n"
            "  -c, --config FILE  config file (default %s, or $APPSTACK_CONFIG)\n"
            "  -h, --help         this help\n"
            "  -V, --version      the version\n",
            AS_DEFAULT_CONFIG);
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int ch;

    W.config_path = as_config_default_path();
    while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            W.config_path = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("appstack-worker %s\n", PACKAGE_VERSION);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        usage(stderr);
        exit(2);
    }
}

/* Tells the master (when there is one) why we cannot serve, and exits. */
static void __attribute__((noreturn)) fail_start(const char *why)
{
    char *msg = NULL;

    if (asprintf(&msg, "%s%s\n", AS_MSG_FAILED, why) >= 0)
        wk_master_send(msg, strlen(msg));
    free(msg);
    exit(1);
}

static bool add_listener(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (W.n_lst >= WK_MAX_LISTEN) {
        as_err("too many listening sockets (at most %d)", WK_MAX_LISTEN);
        return false;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        as_err("listening socket %d: %s", fd, strerror(errno));
        return false;
    }
    W.lst[W.n_lst] = (struct wk_listener){ .kind = WK_LISTENER, .fd = fd, .is_unix = ss.ss_family == AF_UNIX };
    W.n_lst++;
    return true;
}

static bool inherited_listeners(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    bool ok = copy != NULL;

    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && ok; t = strtok_r(NULL, ",", &save)) {
        long fd;
        ok = as_parse_long(t, 0, 1 << 20, &fd) && add_listener((int)fd);
        if (!ok)
            as_err("%s: bad listening socket \"%s\"", AS_ENV_LISTEN_FDS, t);
    }
    free(copy);
    return ok;
}

static bool open_listeners(void)
{
    const char *env = getenv(AS_ENV_LISTEN_FDS);
    char err[512];

    if (env)
        return inherited_listeners(env);
    if (W.cfg.listen.n == 0) {
        as_err("%s: no [supervisor] listen address", W.cfg.path);
        return false;
    }
    for (size_t i = 0; i < W.cfg.listen.n; i++) {
        bool inherited;
        int fd = as_listen_open(W.cfg.listen.v[i], NULL, 1024, &inherited, err, sizeof err);
        if (fd < 0) {
            as_err("%s", err);
            return false;
        }
        if (!add_listener(fd))
            return false;
        as_info("listening on %s", W.cfg.listen.v[i]);
    }
    return true;
}

static void set_limits(void)
{
    const struct as_config *c = &W.cfg;
    struct rlimit rl;

    W.threads = c->threads > 1 ? (int)c->threads : 1;
    W.limits.max_request_line = (size_t)c->limit_request_line;
    W.limits.max_fields = (size_t)c->limit_request_fields;
    W.limits.max_field_size = (size_t)c->limit_request_field_size;
    W.limits.max_header_bytes = AS_HTTP_DEFAULT_HEADER_BYTES;     /* the proxy's too */
    W.limits.max_body = 0;  /* the proxy enforces client_max_body_size */
    W.proxy_limits = W.limits;
    W.proxy_limits.max_fields += AS_HTTP_PROXY_EXTRA_FIELDS;
    W.proxy_limits.max_field_size += AS_HTTP_PROXY_EXTRA_FIELD_SIZE;
    W.proxy_limits.max_header_bytes += AS_HTTP_PROXY_EXTRA_BYTES;
    W.io_timeout = c->timeout > 0 ? c->timeout : 30;
    /* appstackd replaces a worker whose loop has not turned for `timeout`. */
    W.heartbeat_every = c->timeout > 0 && c->timeout < 4.0 ? c->timeout / 4 : 1.0;
    /* Keep-alive connections are cheap here; descriptors should not be the limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            as_warn("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    }
}

static bool setup_python(void)
{
    if (!wk_python_start() || !wk_dump_init())
        return false;
    if (!wk_input_init() || !wk_filewrap_init() || !wk_response_init() || !wk_environ_init()) {
        wk_log_exception("cannot set up the WSGI machinery");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    int rc;

    wk_vgetrandom_init();   /* first: Python seeds its hash from getrandom() */
    parse_args(argc, argv);
    as_log_init("appstack-worker");
    if (!wk_master_attach())
        fail_start("bad worker environment (see the log)");
    wk_slot_state(AS_SLOT_LOADING);
    if (as_config_load(W.config_path, &W.cfg) != 0)
        fail_start("invalid configuration (see the log)");
    as_log_set_format(W.cfg.log_format);
    set_limits();
    W.idle_head.next = W.idle_head.prev = &W.idle_head;
    if (!wk_request_buffers(&wk_loop_request) || !open_listeners() || !wk_trust_init())
        fail_start("cannot set up the worker (see the log)");
    if (!setup_python())
        fail_start("cannot start Python (see the log)");
    if (W.template && !wk_template_prepare())
        fail_start("cannot set up the template (see the log)");
    if (!wk_python_load_app())
        exit(1);    /* the master has the traceback already */
    if (W.template)
        wk_template_run();  /* returns only in a worker it forked */
    if (!wk_loop_init())
        fail_start("cannot set up the event loop (see the log)");
    wk_slot_state(AS_SLOT_IDLE);
    wk_master_send(AS_MSG_READY, strlen(AS_MSG_READY));
    if (W.standalone)
        as_info("ready: %s:%s", W.cfg.module, W.cfg.callable ? W.cfg.callable : "application");
    rc = wk_loop_run();
    wk_python_stop();
    return rc;
}
