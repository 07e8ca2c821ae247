/* The appstack INI file (appstack.ini(5), docs/man/), loaded once by every
 * program so that all of them agree on what is valid. */
#ifndef APPSTACK_CONFIG_H
#define APPSTACK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define AS_DEFAULT_CONFIG "/etc/appstack/appstack.ini"  /* appstack.ini(5) */
#define AS_CONFIG_DIR "/etc/appstack"                   /* instance NAME: AS_CONFIG_DIR/NAME.ini */
#define AS_RUN_DIR "/run/appstack"                      /* instance NAME: AS_RUN_DIR/NAME/{app,control}.sock */
#define AS_INSTANCE_MAX 64
#define AS_MAX_WORKERS 256     /* a reload runs two generations side by side */
#define AS_ACME_DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"
#define AS_PROXY_WORKERS_AUTO 0
#define AS_PROXY_MAX_WORKERS 256
#define AS_MAX_THREADS 128     /* [supervisor] threads: requests a worker serves at once */

struct as_strlist {
    char **v;
    int *line;          /* line in the file each entry came from */
    size_t n;
};

/* Flags after the address of a [proxy] listen ("0.0.0.0:443 ssl"). */
#define AS_LISTEN_SSL   0x1     /* "ssl": TLS */
#define AS_LISTEN_HTTP2 0x2     /* "http2" on a plain listen: HTTP/2 with prior knowledge (h2c) too */
#define AS_LISTEN_PROXY_PROTOCOL 0x4    /* "proxy_protocol": a PROXY v1/v2 header comes first */

#define AS_TLS_1_2 0x1
#define AS_TLS_1_3 0x2

/* A certificate line and the certificate_key line after it. */
struct as_tls_pair {
    char *cert;
    char *key;
    int cert_line, key_line;
};

/* limit_req and limit_conn of [proxy], a [site] or a [location]
 * (docs/proxy.md "Limits"). */
struct as_limit {
    double rate;        /* limit_req: requests per second; 0 = none */
    long burst;         /* requests beyond the rate held (or let through, nodelay) */
    bool nodelay;
    long conn;          /* limit_conn: requests at once per client; 0 = none */
};

struct as_location {
    char *prefix;       /* URL prefix, or the exact path when exact */
    bool exact;
    char *alias;
    long expires;       /* seconds for Cache-Control max-age; -1 = unset */
    bool internal;      /* served only through X-Accel-Redirect */
    struct as_limit limit;
    int line;
};

/* [site NAME] (docs/man/appstack.ini.5.rst): a virtual host of the proxy.
 * The options it shares with [proxy] are [proxy]'s values unless given. */
struct as_site {
    char *name;
    int line;
    struct as_strlist server_name;  /* one name per entry: "example.com", "*.example.com" */
    struct as_strlist upstream;
    size_t client_max_body_size;
    size_t client_body_buffer_size;
    bool access_log;
    double proxy_connect_timeout;
    double proxy_read_timeout;
    struct as_limit limit;          /* the site's own; [proxy]'s apply where it sets none */
    unsigned given;                 /* which of the options above the section set */
    struct as_location *locations;  /* the [location] sections after it */
    size_t n_locations;
};

struct as_config {
    char *path;

    /* [app] */
    char *module;       /* "pkg.mod" part of module:callable */
    char *callable;     /* defaults to "application" */
    char *chdir;
    char *virtualenv;
    struct as_strlist pythonpath;
    struct as_strlist env;          /* "NAME=value" */
    char *script_name;              /* mount point for SCRIPT_NAME, "" = root */
    int stderr_level;               /* LOG_* of the app's stderr lines without "<N>" */
    bool preload;                   /* a template process imports the app once and forks the workers */

    /* [supervisor] */
    struct as_strlist listen;
    int workers;
    long threads;                   /* requests each worker serves at once, on Python threads */
    double timeout;                 /* seconds */
    double graceful_timeout;
    long max_requests;
    long max_requests_jitter;
    size_t max_rss;                 /* bytes; 0 = no limit */
    char *control;
    char *user;
    char *group;
    long limit_request_line;        /* bytes; 414 beyond */
    long limit_request_fields;      /* count; 431 beyond */
    long limit_request_field_size;  /* bytes of one header line; 431 beyond */
    double keepalive;               /* worker idle keep-alive timeout, s */
    struct as_strlist forwarded_allow_ips;  /* addresses, networks, "unix", "*" */
    char *metrics;                  /* Prometheus /metrics and /healthz listen; NULL = off */
    int metrics_line;

    int log_format;                 /* enum as_log_format (log.h): appstackd and its workers */

    /* [proxy] */
    struct as_strlist proxy_listen;     /* the addresses */
    unsigned *proxy_listen_flags;       /* AS_LISTEN_* of each */
    struct as_strlist upstream;
    size_t client_max_body_size;
    bool access_log;
    double client_header_timeout;
    double client_body_timeout;
    double keepalive_timeout;
    double proxy_connect_timeout;
    double proxy_read_timeout;
    long max_connections;
    size_t client_body_buffer_size; /* bodies above this spool to a file */
    size_t proxy_buffer_size;       /* largest upstream response head; 502 beyond */
    char *proxy_user;
    char *proxy_group;
    int proxy_log_format;           /* enum as_log_format */
    int proxy_line;                 /* of the [proxy] header, 0 = none */
    struct as_tls_pair *tls_pairs;
    size_t n_tls_pairs;
    unsigned tls_protocols;         /* AS_TLS_* */
    char *tls_ciphers;              /* OpenSSL cipher list for TLS 1.2; NULL = the default */
    int tls_ciphers_line;
    bool http2;                     /* h2 by ALPN on TLS listens */
    bool redirect_https;
    double hsts;                    /* Strict-Transport-Security max-age, s; 0 = none */
    struct as_strlist real_ip_from; /* front servers whose X-Forwarded-* are kept */
    char *proxy_metrics;            /* NULL = off */
    int proxy_metrics_line;
    /* compression of responses (docs/proxy.md "Compression") */
    bool gzip, brotli;
    long gzip_comp_level;           /* 1-9 */
    long brotli_comp_level;         /* 0-11 */
    size_t gzip_min_length;         /* smaller responses go out as they are */
    struct as_strlist compress_types;   /* media types, several per line; none given: the default list */
    long max_tunnels;               /* upgrade requests and tunnels at once; 503 beyond */
    struct as_limit limit;          /* limit_req, limit_conn for every site */
    long limit_req_status, limit_conn_status;
    struct as_strlist limit_allow;  /* clients no limit applies to */
    size_t limit_zone_size;         /* memory of each table of clients */
    int proxy_workers;              /* proxy processes; AS_PROXY_WORKERS_AUTO = one per CPU */
    bool acme;                      /* a certificate for acme_domains from acme_directory */
    int acme_line;
    struct as_strlist acme_domains; /* one name per entry, lower case */
    char *acme_email;               /* NULL: an account without contact */
    int acme_email_line;
    char *acme_directory;           /* NULL: AS_ACME_DEFAULT_DIRECTORY */
    int acme_directory_line;
    long max_fails;                 /* failures within fail_timeout that take an upstream out; 0 = never */
    double fail_timeout;            /* s: that window, and how long it stays out */
    char *health_check;             /* path an active check GETs on each upstream; NULL = off */
    double health_check_interval;   /* s between two checks of an upstream */

    /* The [location] sections before any [site]: the default site's. */
    struct as_location *locations;
    size_t n_locations;
    struct as_site *sites;
    size_t n_sites;
};

/* Loads PATH into CFG (which it initialises with the defaults). Every error
 * is printed to stderr as "FILE:LINE: message". Returns the number of errors;
 * a file that cannot be read counts as one. */
int as_config_load(const char *path, struct as_config *cfg);
void as_config_free(struct as_config *cfg);

/* The config path a program uses when no -c is given. */
const char *as_config_default_path(void);

/* Instances (several apps on one host, appstack@NAME units): from now on
 * this process is instance NAME, whose config is AS_CONFIG_DIR/NAME.ini
 * (the default path) and whose control socket and, without a listen line,
 * app socket default to AS_RUN_DIR/NAME/control.sock and app.sock; NULL:
 * no instance again. False (and nothing changes) when NAME is not a valid
 * instance name. */
bool as_config_set_instance(const char *name);
/* NAME is letters, digits, "_", "-", "." (not first), at most
 * AS_INSTANCE_MAX bytes, and not "appstack" (appstack.ini is the
 * instance-less config). */
bool as_instance_name_valid(const char *name);

/* "10m" -> 10485760. Returns false on anything that is not a size. */
bool as_parse_size(const char *s, size_t *out);
/* "30", "30s", "5m", "1h", "30d", "0.5" -> seconds. */
bool as_parse_duration(const char *s, double *out);
bool as_parse_long(const char *s, long min, long max, long *out);
bool as_parse_bool(const char *s, bool *out);

#endif
