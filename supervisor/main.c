/* appstackd: command line, configuration check, then the master loop. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfgcheck.h"
#include "log.h"
#include "master.h"

static struct master master;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: appstackd [-c FILE | -a NAME] [--check]\n"
            "The appstack supervisor: binds (or inherits from systemd) the app's sockets,\n"
            "runs appstack-worker processes, restarts them, reloads and scales them.\n\n"
            "  -c, --config FILE  configuration (default %s, or $APPSTACK_CONFIG)\n"
            "  -a, --app NAME     instance NAME: %s/NAME.ini, sockets in %s/NAME/\n"
            "      --check        validate the configuration and exit (0 valid, 1 invalid)\n"
            "  -h, --help         this help\n"
            "  -V, --version      version\n\n"
            "Signals: TERM graceful stop, INT/QUIT fast stop, HUP reload, TTIN/TTOU one worker more/less.\n"
            "Control it with supctl.\n",
            AS_DEFAULT_CONFIG, AS_CONFIG_DIR, AS_RUN_DIR);
}

/* Workers chdir to [app] chdir and read the config again: give them an
 * absolute path. */
static char *absolute(const char *path)
{
    char *abs = realpath(path, NULL);

    return abs ? abs : strdup(path);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "app", required_argument, NULL, 'a' },
        { "check", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 }
    };
    const char *config = NULL;
    bool check = false;
    struct sup_creds creds;
    int c, rc;

    while ((c = getopt_long(argc, argv, "c:a:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'a':
            if (!as_config_set_instance(optarg)) {
                fprintf(stderr, "appstackd: -a %s: not an instance name (letters, digits, \"_\", \"-\", \".\"; "
                        "not \"appstack\")\n", optarg);
                return 2;
            }
            break;
        case 'k': check = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("appstackd %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "appstackd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!config)
        config = as_config_default_path();
    as_log_init("appstackd");
    rc = sup_config_load(config, &master.cfg, NULL) ? 1 : 0;
    if (check || rc) {
        if (check && !rc)
            printf("%s: configuration is valid\n", config);
        as_config_free(&master.cfg);
        return rc;
    }
    as_log_set_format(master.cfg.log_format);
    sup_resolve_creds(&master.cfg, &creds);  /* checked by sup_config_load */
    master.uid = creds.uid;
    master.gid = creds.gid;
    master.groups = creds.groups;
    master.n_groups = creds.n_groups;
    master.config_path = absolute(config);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());  /* max_requests jitter */
    rc = master_run(&master);
    free(master.config_path);
    as_config_free(&master.cfg);
    return rc;
}
