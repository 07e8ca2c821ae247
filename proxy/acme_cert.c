/* The certificates ACME is about, with OpenSSL: when the issued one ends
 * (the master's schedule), and the self-signed placeholder the TLS listens
 * serve until the first one is issued. */
#include "acme.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool asn1_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = timegm(&tm);
    return true;
}

bool acme_cert_read(const char *path, const struct as_strlist *names, time_t *not_before, time_t *not_after,
                    bool *covers)
{
    FILE *f = fopen(path, "re");
    X509 *x;
    bool ok;

    if (!f)
        return false;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        ERR_clear_error();
        return false;
    }
    ok = asn1_time(X509_get0_notBefore(x), not_before) && asn1_time(X509_get0_notAfter(x), not_after);
    *covers = true;
    for (size_t i = 0; i < names->n; i++)
        if (X509_check_host(x, names->v[i], 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
            *covers = false;
    X509_free(x);
    return ok;
}

/* subjectAltName "DNS:a,DNS:b" (IP: for an address). */
static X509_EXTENSION *san_of(const struct as_strlist *names)
{
    char san[8192];
    size_t used = 0;
    X509_EXTENSION *ext;

    san[0] = '\0';
    for (size_t i = 0; i < names->n && used < sizeof san; i++) {
        const char *n = names->v[i];
        bool ip = strspn(n, "0123456789.") == strlen(n) || n[0] == '[';
        used += (size_t)snprintf(san + used, sizeof san - used, "%s%s:%.*s", i ? "," : "", ip ? "IP" : "DNS",
                                 (int)(n[0] == '[' ? strlen(n) - 2 : strlen(n)), n[0] == '[' ? n + 1 : n);
    }
    if (used >= sizeof san)
        return NULL;
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    return ext;
}

/* PEM of what WRITE writes, to PATH through a temp file and a rename, so a
 * reader sees the old file or the new one. */
static bool write_pem(const char *path, mode_t mode, bool (*write)(FILE *, void *), void *obj)
{
    char tmp[PATH_MAX + 8];
    FILE *f;
    int fd;
    bool ok;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.new", path) >= sizeof tmp)
        return false;
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        as_err("acme: %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    ok = write(f, obj);
    if (fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) == 0)
        return true;
    as_err("acme: writing %s: %s", path, ok ? strerror(errno) : "PEM encoding failed");
    unlink(tmp);
    return false;
}

static bool write_key(FILE *f, void *k)
{
    return PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
}

static bool write_cert(FILE *f, void *x)
{
    return PEM_write_X509(f, x) == 1;
}

bool acme_placeholder_make(const struct as_strlist *names, int days, const char *cert, const char *key)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *subject;
    X509_EXTENSION *san = names->n ? san_of(names) : NULL;
    uint64_t serial = 0;
    bool ok = pk && x && san;

    ok = ok && RAND_bytes((unsigned char *)&serial, sizeof serial) == 1;
    serial >>= 1;       /* positive */
    ok = ok && X509_set_version(x, 2) == 1 && ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) == 1;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), 86400L * days);
    subject = ok ? X509_get_subject_name(x) : NULL;
    ok = ok && X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                                          (const unsigned char *)"appstack placeholder until ACME", -1, -1, 0) == 1;
    ok = ok && X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)names->v[0], -1, -1,
                                          0) == 1;
    ok = ok && X509_set_issuer_name(x, subject) == 1 && X509_set_pubkey(x, pk) == 1 && X509_add_ext(x, san, -1) == 1;
    ok = ok && X509_sign(x, pk, EVP_sha256()) > 0;
    if (!ok) {
        as_err("acme: making a placeholder certificate: %s", ERR_reason_error_string(ERR_get_error()));
        ERR_clear_error();
    } else {
        /* The key first: a reader never finds a certificate without its key. */
        ok = write_pem(key, 0600, write_key, pk) && write_pem(cert, 0644, write_cert, x);
    }
    X509_EXTENSION_free(san);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok;
}
