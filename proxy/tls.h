/* TLS with OpenSSL 3: the certificate contexts of a runtime (tls_ctx.c),
 * session ticket keys (tls_tickets.c) and the TLS transport of a client
 * connection (tls_conn.c). */
#ifndef APPSTACK_PROXY_TLS_H
#define APPSTACK_PROXY_TLS_H

#include <openssl/ssl.h>

#include "../common/config.h"

struct conn;

/* One SSL_CTX per set of names: the pairs whose certificates name the same
 * hosts share it (an RSA and an ECDSA one side by side; OpenSSL picks by
 * what the client supports). */
struct tls_site {
    SSL_CTX *ctx;
    X509 *leaf[2];          /* referenced, for name matching */
    int n_leaf;
};

/* The TLS part of a runtime: sites[0] answers clients without SNI or with
 * a name no certificate has. */
struct tls_rt {
    struct tls_site *sites;
    size_t n_sites;
};

/* Contexts for CFG's certificate pairs. Every problem is printed to stderr
 * as FILE:LINE: message; returns NULL if there was any. */
struct tls_rt *tls_rt_load(const struct as_config *cfg);
void tls_rt_free(struct tls_rt *t);

/* tls_tickets.c, in the master, once, before the first fork: the secret
 * the ticket keys come from (getrandom, no OpenSSL). Proxy processes forked
 * after it derive the same keys. False after logging. */
bool tls_tickets_seed(void);
/* tls_tickets.c: the callback OpenSSL calls to seal and open tickets. */
int tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                  EVP_MAC_CTX *hctx, int enc);

/* tls_conn.c: C (just accepted) starts its handshake on the current
 * runtime's contexts. False (and C untouched) when OpenSSL cannot. */
bool tls_conn_start(struct conn *c);

#endif
