/* Certificates by ACME (acme = on): the master runs Debian's uacme, a
 * packaged ACME client, whenever the certificate for acme_domains is
 * missing or due; uacme proves the names by HTTP-01 with files its hook
 * writes into the state directory, which every serving process answers at
 * /.well-known/acme-challenge/; a new certificate is installed by a reload.
 * Until the first one exists the TLS listens serve a self-signed
 * placeholder for the same names.
 *
 * State, under $STATE_DIRECTORY (systemd's StateDirectory=), else
 * /var/lib/appstack:
 *   acme/challenges/            HTTP-01 answers (uacme.sh's webroot)
 *   acme/placeholder.{pem,key}  until the first certificate
 *   acme/SERVER/                uacme's -c directory, one per acme_directory:
 *     private/key.pem             the account key
 *     account                     the account works (its email)
 *     NAME/cert.pem, private/NAME/key.pem    the pair (NAME: the first domain)
 */
#ifndef APPSTACK_PROXY_ACME_H
#define APPSTACK_PROXY_ACME_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "../common/config.h"

#define ACME_CLIENT "/usr/bin/uacme"
#define ACME_HOOK "/usr/share/uacme/uacme.sh"       /* uacme's own HTTP-01 hook */
#define ACME_CHALLENGE_PREFIX "/.well-known/acme-challenge/"
#define ACME_STATE_DEFAULT "/var/lib/appstack"

struct acme_paths {
    char dir[PATH_MAX];
    char challenges[PATH_MAX];
    char confdir[PATH_MAX];
    char account[PATH_MAX];
    char account_key[PATH_MAX];
    char cert[PATH_MAX], key[PATH_MAX];
    char placeholder_cert[PATH_MAX], placeholder_key[PATH_MAX];
};

/* CFG's paths. False when one would be longer than PATH_MAX. */
bool acme_paths(const struct as_config *cfg, struct acme_paths *p);

/* What the proxy needs for acme = on besides the option values (checked by
 * the config loader): printed as FILE:LINE: message; returns the errors. */
int acme_config_errors(const struct as_config *cfg);

/* The state directories (owned by [proxy] user when made as root). False
 * with a message logged. */
bool acme_make_dirs(const struct as_config *cfg, const struct acme_paths *p);

/* runtime.c, for a config with acme = on and a TLS listen: appends the pair
 * the TLS listens serve to CFG's pairs: the issued one, else (unless
 * CHECK_ONLY, when nothing is added) the placeholder, made here when it is
 * missing, expired or for other names. False with a message logged. */
bool acme_add_pair(struct as_config *cfg, bool check_only);

/* acme_cert.c: when the certificate at PATH ends (and began), and whether
 * it names every one of NAMES. False when it cannot be read. */
bool acme_cert_read(const char *path, const struct as_strlist *names, time_t *not_before, time_t *not_after,
                    bool *covers);
/* acme_cert.c: a self-signed ECDSA P-256 certificate for NAMES, valid for
 * DAYS, written to CERT and KEY (the key mode 0600). False with a message
 * logged. */
bool acme_placeholder_make(const struct as_strlist *names, int days, const char *cert, const char *key);

/* master.c calls these: at start; every second; on HUP (a new
 * configuration: look again now, and forget the back-off) and SIGUSR1
 * (look now); for each child that exits (true when it was the client);
 * at the stop. acme_status() is the piece of STATUS= about certificates,
 * "" without acme. */
void acme_start(void);
void acme_tick(void);
void acme_poke(bool new_config);
bool acme_child_exited(pid_t pid, int status);
void acme_stop(void);
/* In a process just forked from the master: the client is not its. */
void acme_forget(void);
const char *acme_status(void);

#endif
