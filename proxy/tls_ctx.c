/* TLS contexts: the certificate pairs of the config loaded into SSL_CTXs,
 * one per set of names (RSA and ECDSA pairs for the same names share one),
 * with the protocol, cipher and resumption settings, SNI and ALPN.
 *
 * Defaults follow Mozilla's "intermediate" profile (TLS 1.2 and 1.3, AEAD
 * ciphers with forward secrecy, X25519/P-256/P-384, the client's cipher
 * preference). */
#include "tls.h"
#include "conn.h"

#include <errno.h>
#include <openssl/dh.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Mozilla intermediate, TLS 1.2 part (TLS 1.3 suites are OpenSSL's own). */
#define DEFAULT_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define GROUPS "X25519:prime256v1:secp384r1"
#define SESSION_LIFETIME 3600       /* s: what a ticket promises; the keys live longer */

/* The reason of the last OpenSSL error, for a FILE:LINE message. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r ? r : "unknown error";
}

/* ALPN: h2 when http2 is on, else http/1.1; a client that offers neither
 * gets no ALPN answer and speaks HTTP/1.1. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    static const unsigned char both[] = "\x02h2\x08http/1.1", h1[] = "\x08http/1.1";
    bool h2 = srv.rt->cfg.http2;
    unsigned char *sel;

    if (SSL_select_next_proto(&sel, outlen, h2 ? both : h1, h2 ? sizeof both - 1 : sizeof h1 - 1, in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static bool site_matches(const struct tls_site *s, const char *name, unsigned int flags)
{
    for (int i = 0; i < s->n_leaf; i++)
        if (X509_check_host(s->leaf[i], name, 0, flags, NULL) == 1)
            return true;
    return false;
}

/* SNI: the site whose certificate names the host, exact names before
 * wildcards; otherwise the default (first) one. The current runtime
 * decides: a handshake during a reload gets the new certificates. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    const struct tls_rt *t = srv.rt->tls;

    if (!name || !t)
        return SSL_TLSEXT_ERR_OK;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < t->n_sites; i++) {
            if (site_matches(&t->sites[i], name, pass ? 0 : X509_CHECK_FLAG_NO_WILDCARDS)) {
                if (SSL_get_SSL_CTX(ssl) != t->sites[i].ctx)
                    SSL_set_SSL_CTX(ssl, t->sites[i].ctx);
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    if (SSL_get_SSL_CTX(ssl) != t->sites[0].ctx)
        SSL_set_SSL_CTX(ssl, t->sites[0].ctx);
    return SSL_TLSEXT_ERR_OK;
}

/* DHE with the RFC 7919 group ffdhe2048, as Mozilla's profile says, not
 * OpenSSL's automatic choice (an older RFC 3526 group). */
static bool set_dh(SSL_CTX *ctx)
{
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    EVP_PKEY *dh = NULL;
    bool ok = pctx && EVP_PKEY_paramgen_init(pctx) == 1 && EVP_PKEY_CTX_set_dh_nid(pctx, NID_ffdhe2048) == 1
              && EVP_PKEY_paramgen(pctx, &dh) == 1;

    EVP_PKEY_CTX_free(pctx);
    if (ok && SSL_CTX_set0_tmp_dh_pkey(ctx, dh) == 1)
        return true;
    EVP_PKEY_free(dh);
    return false;
}

static SSL_CTX *new_ctx(const struct as_config *cfg, int *errors)
{
    static const unsigned char sid_ctx[] = "appstack";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx) {
        fprintf(stderr, "%s:0: TLS: %s\n", cfg->path, ssl_reason());
        (*errors)++;
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->tls_protocols & AS_TLS_1_2 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, cfg->tls_protocols & AS_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF
                        | SSL_OP_ENABLE_KTLS);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle connections give their buffers back; writes may be partial and
     * retried from wherever the spool holds the bytes. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                     | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);     /* one read per burst of records, not two per record */
    if (SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers ? cfg->tls_ciphers : DEFAULT_CIPHERS) != 1) {
        fprintf(stderr, "%s:%d: tls_ciphers: no usable cipher in \"%s\" (%s)\n", cfg->path,
                cfg->tls_ciphers_line, cfg->tls_ciphers ? cfg->tls_ciphers : DEFAULT_CIPHERS, ssl_reason());
        (*errors)++;
    }
    if (SSL_CTX_set1_groups_list(ctx, GROUPS) != 1 || !set_dh(ctx)) {
        fprintf(stderr, "%s:0: TLS: key exchange groups: %s\n", cfg->path, ssl_reason());
        (*errors)++;
    }
    /* Resumption by tickets only: no per-process session cache that
     * other proxy processes could not see. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_timeout(ctx, SESSION_LIFETIME);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    return ctx;
}

/* The leaf certificate of a PEM chain file, for its names and key type;
 * NULL with a message printed when it cannot be read. */
static X509 *read_leaf(const struct as_config *cfg, const struct as_tls_pair *p)
{
    FILE *f = fopen(p->cert, "re");
    X509 *x;

    if (!f) {
        fprintf(stderr, "%s:%d: certificate %s: %s\n", cfg->path, p->cert_line, p->cert, strerror(errno));
        return NULL;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        ERR_clear_error();
        fprintf(stderr, "%s:%d: certificate %s: no PEM certificate in it\n", cfg->path, p->cert_line, p->cert);
    }
    return x;
}

/* The DNS names (or, without any, the common name) a certificate is for,
 * lower case, sorted and joined: pairs with equal strings share a site. */
static void names_of(X509 *x, char *out, size_t len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *names[64];
    int n = 0;
    size_t used = 0;

    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && n < 64; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS)
            names[n++] = strndup((const char *)ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(gens);
    if (!n) {
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
            names[n++] = strdup(cn);
    }
    for (int i = 0; i < n; i++)         /* insertion sort: a handful of names */
        for (int j = i; j > 0 && names[j] && names[j - 1] && strcasecmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (names[i])
            used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s ", names[i]);
        free(names[i]);
    }
    for (char *p = out; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
}

static void add_pair(struct tls_rt *t, const struct as_config *cfg, const struct as_tls_pair *p, int *errors)
{
    X509 *leaf = read_leaf(cfg, p), *other;
    EVP_PKEY *pub;
    char names[4096], other_names[4096];
    struct tls_site *site = NULL;
    int type;

    if (!leaf) {
        (*errors)++;
        return;
    }
    if (access(p->key, R_OK) < 0) {
        fprintf(stderr, "%s:%d: certificate_key %s: %s\n", cfg->path, p->key_line, p->key, strerror(errno));
        (*errors)++;
        X509_free(leaf);
        return;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        fprintf(stderr, "%s:%d: warning: certificate %s has expired\n", cfg->path, p->cert_line, p->cert);
    pub = X509_get0_pubkey(leaf);
    type = pub ? EVP_PKEY_get_base_id(pub) : 0;
    names_of(leaf, names, sizeof names);
    for (size_t i = 0; i < t->n_sites && !site; i++) {
        names_of(t->sites[i].leaf[0], other_names, sizeof other_names);
        if (strcmp(names, other_names))
            continue;
        other = t->sites[i].leaf[0];
        if (t->sites[i].n_leaf == 2 || EVP_PKEY_get_base_id(X509_get0_pubkey(other)) == type) {
            fprintf(stderr, "%s:%d: certificate %s: another certificate with the same names and key type "
                    "comes before it\n", cfg->path, p->cert_line, p->cert);
            (*errors)++;
            X509_free(leaf);
            return;
        }
        site = &t->sites[i];
    }
    if (!site) {
        SSL_CTX *ctx = new_ctx(cfg, errors);
        if (!ctx) {
            X509_free(leaf);
            return;
        }
        t->sites = realloc(t->sites, (t->n_sites + 1) * sizeof *t->sites);
        if (!t->sites) {
            perror("appstack-proxy: out of memory");
            abort();
        }
        site = &t->sites[t->n_sites++];
        memset(site, 0, sizeof *site);
        site->ctx = ctx;
    }
    site->leaf[site->n_leaf++] = leaf;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(site->ctx, p->cert) != 1) {
        fprintf(stderr, "%s:%d: certificate %s: %s\n", cfg->path, p->cert_line, p->cert, ssl_reason());
        (*errors)++;
        return;
    }
    if (SSL_CTX_use_PrivateKey_file(site->ctx, p->key, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(site->ctx) != 1) {
        const char *why = ssl_reason();
        fprintf(stderr, "%s:%d: certificate_key %s: %s\n", cfg->path, p->key_line, p->key,
                !strcmp(why, "key values mismatch") || !strcmp(why, "no certificate assigned")
                ? "not the key of the certificate before it" : why);
        (*errors)++;
    }
}

void tls_rt_free(struct tls_rt *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_sites; i++) {
        SSL_CTX_free(t->sites[i].ctx);
        for (int j = 0; j < t->sites[i].n_leaf; j++)
            X509_free(t->sites[i].leaf[j]);
    }
    free(t->sites);
    free(t);
}

struct tls_rt *tls_rt_load(const struct as_config *cfg)
{
    struct tls_rt *t = calloc(1, sizeof *t);
    int errors = 0, line = 0;

    if (!t) {
        perror("appstack-proxy: out of memory");
        abort();
    }
    for (size_t i = 0; i < cfg->proxy_listen.n; i++)
        if (cfg->proxy_listen_flags[i] & AS_LISTEN_SSL && !line)
            line = cfg->proxy_listen.line[i];
    if (!cfg->n_tls_pairs) {
        fprintf(stderr, "%s:%d: listen: ssl needs a certificate and certificate_key in [proxy]\n", cfg->path, line);
        errors++;
    }
    for (size_t i = 0; i < cfg->n_tls_pairs; i++)
        add_pair(t, cfg, &cfg->tls_pairs[i], &errors);
    if (errors) {
        tls_rt_free(t);
        return NULL;
    }
    return t;
}
