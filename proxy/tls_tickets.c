/* Session tickets: the keys that seal resumption state into tickets, so
 * any proxy process can resume any client's session without a shared
 * cache.
 *
 * The keys follow a one-way ratchet over hourly epochs of the wall clock:
 * a random secret is drawn once, in the master (tls_tickets_seed, with
 * getrandom: the master does not use OpenSSL), each epoch's secret is an
 * HMAC of the one before, and each epoch's key is derived from its secret,
 * in each serving process at its first ticket. Processes forked from the
 * master hold the same first secret and epoch and the same clock, so they
 * derive the same keys without talking to each other, and a serving
 * process cannot recover an earlier key from what it holds (the master
 * keeps the first secret, for the processes it forks later). Tickets
 * are sealed with the current epoch's key and opened with the previous,
 * current or next one (processes cross an epoch boundary at slightly
 * different moments); a ticket from an older key is ignored, which costs
 * the client a full handshake. A restart draws a new secret. */
#include "tls.h"
#include "log.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define EPOCH_SECONDS 3600

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static struct {
    bool seeded, ready;
    unsigned char first[32];        /* the master's draw: epoch0's secret */
    unsigned char name0[16];        /* the name of a key before epoch0: matches nothing */
    uint64_t epoch0;
    uint64_t epoch;                 /* of keys[1] */
    unsigned char secret[32];       /* the ratchet state of epoch + 1 */
    struct ticket_key keys[3];      /* epoch - 1, epoch, epoch + 1 */
} tk;

static void prf(const unsigned char secret[32], const char *label, unsigned char out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), secret, 32, (const unsigned char *)label, strlen(label), out, &n);
}

static void derive(const unsigned char secret[32], struct ticket_key *k)
{
    unsigned char name[32];

    prf(secret, "appstack ticket name", name);
    memcpy(k->name, name, sizeof k->name);
    prf(secret, "appstack ticket aes", k->aes);
    prf(secret, "appstack ticket hmac", k->hmac);
}

static void ratchet(unsigned char secret[32])
{
    unsigned char next[32];

    prf(secret, "appstack ticket ratchet", next);
    memcpy(secret, next, 32);
    OPENSSL_cleanse(next, sizeof next);
}

static bool random_bytes(unsigned char *out, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        out += n;
        len -= (size_t)n;
    }
    return true;
}

bool tls_tickets_seed(void)
{
    if (tk.seeded)
        return true;
    if (!random_bytes(tk.first, sizeof tk.first) || !random_bytes(tk.name0, sizeof tk.name0)) {
        as_err("TLS: no random bytes for session ticket keys: %s", strerror(errno));
        return false;
    }
    tk.epoch0 = (uint64_t)time(NULL) / EPOCH_SECONDS;
    tk.seeded = true;
    return true;
}

/* In a serving process, at its first ticket: the keys of epoch0 and the
 * next, from which advance() moves on; the first secret is then
 * forgotten. */
static void start_keys(void)
{
    memcpy(tk.keys[0].name, tk.name0, sizeof tk.name0);
    tk.epoch = tk.epoch0;
    derive(tk.first, &tk.keys[1]);
    memcpy(tk.secret, tk.first, sizeof tk.first);
    ratchet(tk.secret);
    derive(tk.secret, &tk.keys[2]);
    OPENSSL_cleanse(tk.first, sizeof tk.first);
    tk.ready = true;
}

/* Moves the window to the wall clock's epoch. */
static void advance(void)
{
    uint64_t now = (uint64_t)time(NULL) / EPOCH_SECONDS;

    while (tk.epoch < now) {
        tk.keys[0] = tk.keys[1];
        tk.keys[1] = tk.keys[2];
        ratchet(tk.secret);
        derive(tk.secret, &tk.keys[2]);
        tk.epoch++;
    }
}

static int set_mac_key(EVP_MAC_CTX *hctx, struct ticket_key *k)
{
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof k->hmac);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's contract: 1 = done (or opened with the current key), 2 =
 * opened, but issue a fresh ticket, 0 = unknown key (full handshake),
 * -1 = failure.
 *
 * A TLS 1.3 resumption always gets a fresh ticket: TLS 1.3 clients use a
 * ticket once (RFC 8446, C.4: reuse would let connections be linked), so
 * without a new one the client's next connection would be a full
 * handshake, and every other reconnection would cost one. TLS 1.2 clients
 * keep their ticket; it is renewed only when an older key opened it. */
int tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                  EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key *k;

    if (!tk.seeded)
        return -1;      /* cannot be: the master seeds before the first fork */
    if (!tk.ready)
        start_keys();
    advance();
    if (enc) {
        k = &tk.keys[1];
        memcpy(key_name, k->name, sizeof k->name);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1
            || EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || set_mac_key(hctx, k) != 1)
            return -1;
        return 1;
    }
    for (int i = 1; i < 3 + 1; i++) {
        k = &tk.keys[i % 3];        /* the current key first */
        if (memcmp(key_name, k->name, sizeof k->name))
            continue;
        if (set_mac_key(hctx, k) != 1 || EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
        return k == &tk.keys[1] && SSL_version(ssl) < TLS1_3_VERSION ? 1 : 2;
    }
    return 0;
}
