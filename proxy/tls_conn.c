/* The TLS transport of a client connection: the handshake (a protocol of
 * its own until it is done, which then hands the connection to the
 * protocol ALPN chose), and reads and writes through OpenSSL on the
 * socket.
 *
 * Sending: small pieces of a spool (a head and a short body, or a head and
 * the start of a file) are gathered into one record, so a response costs
 * one record and one write where it can; a piece of 16 KiB or more is
 * encrypted where it lies; several records in one turn go out corked.
 * Files go through a 16 KiB read and SSL_write,
 * unless the kernel does TLS (kTLS): then SSL_sendfile sends them without
 * a copy through user space. */
#include "tls.h"
#include "metrics.h"
#include "exchange.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <string.h>
#include <sys/socket.h>

#define RECORD 16384                /* the largest TLS record's payload */

static char stage[RECORD];          /* gathered pieces; single-threaded, and a retried
                                       write may come from anywhere (moving buffer) */
static enum { KTLS_UNKNOWN, KTLS_ON, KTLS_OFF } ktls_state;

/* After a failed call: EAGAIN with the watch the retry needs, or an error. */
static int ssl_failed(struct conn *c, int ret, bool reading)
{
    int e = SSL_get_error(c->ssl, ret);

    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (!reading) {
            c->tp_want = EV_READ;
            conn_watch(c, c->want);
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (reading) {
            c->tp_want = EV_WRITE;
            conn_watch(c, c->want);
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (!errno)
            errno = ECONNRESET;
        c->tls_shut = true;     /* no close_notify on a broken connection */
        return -1;
    default:
        as_debug("TLS with %s: %s", c->peer, ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        c->tls_shut = true;
        errno = EPROTO;
        return -1;
    }
}

static ssize_t tls_recv(struct conn *c, void *buf, size_t len)
{
    size_t n;
    int r;

    ERR_clear_error();
    r = SSL_read_ex(c->ssl, buf, len, &n);
    if (r == 1) {
        /* Bytes OpenSSL read ahead are not announced by the socket. */
        c->tp_pending = SSL_has_pending(c->ssl) == 1;
        if (c->tp_pending)
            ev_feed_event(srv.loop, &c->io, EV_READ);
        return (ssize_t)n;
    }
    c->tp_pending = false;
    return ssl_failed(c, r, true);
}

static int tls_sendfile(struct conn *c, struct spool *s)
{
    int fd;
    off_t pos, end;
    ossl_ssize_t n;

    while (spool_file_part(s, &fd, &pos, &end)) {
        ERR_clear_error();
        n = SSL_sendfile(c->ssl, fd, pos, (size_t)(end - pos > (1 << 30) ? (1 << 30) : end - pos), 0);
        if (n <= 0) {
            ssl_failed(c, -1, false);
            return -1;
        }
        spool_advance(s, (size_t)n);
    }
    return 1;
}

static int send_records(struct conn *c, struct spool *s)
{
    for (;;) {
        const char *p;
        bool more;
        size_t n = spool_peek(s, &p, &more), done;
        int r;

        if (!n && !more)
            return 1;
        if (!n && c->ktls) {
            r = tls_sendfile(c, s);
            if (r < 0)
                return errno == EAGAIN ? 0 : -1;
            continue;
        }
        if (n >= RECORD || (n && !more)) {
            if (n > RECORD)
                n = RECORD;
        } else {
            ssize_t g = spool_gather(s, stage, sizeof stage);
            if (g < 0)
                return -1;
            p = stage;
            n = (size_t)g;
        }
        ERR_clear_error();
        r = SSL_write_ex(c->ssl, p, n, &done);
        if (r != 1) {
            ssl_failed(c, r, false);
            return errno == EAGAIN ? 0 : -1;
        }
        spool_advance(s, done);
    }
}

static bool set_cork(int fd, int on)
{
    return setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0;
}

/* OpenSSL writes each record with its own write(), and with TCP_NODELAY
 * each write leaves as its own segment: seven for 100 KiB. More than a
 * record to send goes out corked, so the kernel cuts the records into
 * full-sized segments (64 KiB on loopback, the MSS elsewhere): fewer
 * packets to send, acknowledge and receive. The cork comes off before
 * returning, whatever the result, so nothing waits in it (were that to
 * fail, the kernel sends what it holds after 200 ms). A socket that takes
 * no cork (not TCP) just sends as before. */
static int tls_send(struct conn *c, struct spool *s)
{
    bool corked = !c->ktls && spool_pending(s) > RECORD && set_cork(c->fd, 1);
    int r = send_records(c, s), e = errno;

    if (corked && !set_cork(c->fd, 0))
        as_warn("TLS with %s: TCP_CORK off: %s", c->peer, strerror(errno));
    errno = e;
    return r;
}

static void tls_shutdown(struct conn *c)
{
    if (!c->tls_shut) {
        c->tls_shut = true;
        ERR_clear_error();
        SSL_shutdown(c->ssl);       /* close_notify, if the socket takes it */
        ERR_clear_error();
    }
    shutdown(c->fd, SHUT_WR);
}

static void tls_close(struct conn *c)
{
    if (!c->ssl)
        return;
    if (!c->tls_shut && SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
}

const struct transport transport_tls = {
    .name = "tls",
    .secure = true,
    .recv = tls_recv,
    .send = tls_send,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

/* Says once which way files go out: it depends on the kernel. */
static void note_ktls(struct conn *c)
{
    c->ktls = BIO_get_ktls_send(SSL_get_wbio(c->ssl)) == 1;
    if (ktls_state != KTLS_UNKNOWN)
        return;
    if (c->ktls) {
        ktls_state = KTLS_ON;
        as_info("TLS: the kernel encrypts (kTLS): files are sent with sendfile");
        return;
    }
    /* Only a cipher the kernel could do tells that it cannot. */
    if (strstr(SSL_get_cipher_name(c->ssl), "GCM")) {
        ktls_state = KTLS_OFF;
        as_info("TLS: no kernel TLS here (no \"tls\" TCP ULP): files are sent with read and SSL_write");
    }
}

/* The handshake is done: ALPN says which protocol speaks now. */
static void handshake_done(struct conn *c)
{
    const unsigned char *alpn;
    unsigned int len;

    note_ktls(c);
    SSL_get0_alpn_selected(c->ssl, &alpn, &len);
    c->proto = len == 2 && !memcmp(alpn, "h2", 2) ? &protocol_h2 : &protocol_h1;
    c->tp_pending = SSL_has_pending(c->ssl) == 1;
    c->proto->start(c);
}

static void hs_step(struct conn *c)
{
    int r;

    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        PM_INC(tls_handshakes);
        handshake_done(c);
        return;
    }
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        conn_watch(c, EV_READ);
        return;
    case SSL_ERROR_WANT_WRITE:
        conn_watch(c, EV_WRITE);
        return;
    default:
        /* Scanners and clients that distrust the certificate end here:
         * common enough not to be a warning. */
        as_debug("TLS handshake with %s: %s", c->peer,
                 ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error()) : strerror(errno));
        ERR_clear_error();
        PM_INC(tls_handshake_errors);
        c->tls_shut = true;
        conn_close(c);
    }
}

static void hs_start(struct conn *c)
{
    conn_watch(c, EV_READ);
    conn_arm(c, srv.rt->cfg.client_header_timeout);
}

static void hs_timeout(struct conn *c)
{
    PM_INC(tls_handshake_errors);
    c->tls_shut = true;
    conn_close(c);
}

static void hs_nothing(struct conn *c)
{
}

/* No exchange exists before the handshake is done: the response
 * operations are never called. */
static const struct protocol protocol_handshake = {
    .name = "tls-handshake",
    .start = hs_start,
    .readable = hs_step,
    .writable = hs_step,
    .timeout = hs_timeout,
    .stop = hs_nothing,
    .close = hs_nothing,
};

bool tls_conn_start(struct conn *c)
{
    const struct tls_rt *t = srv.rt->tls;

    if (!t)
        return false;
    ERR_clear_error();
    c->ssl = SSL_new(t->sites[0].ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
        as_warn("TLS: a new connection: %s", ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        if (c->ssl)
            SSL_free(c->ssl);
        c->ssl = NULL;
        return false;
    }
    if (ktls_state == KTLS_OFF)
        SSL_clear_options(c->ssl, SSL_OP_ENABLE_KTLS);     /* spares a failing setsockopt */
    SSL_set_accept_state(c->ssl);
    SSL_set_app_data(c->ssl, c);
    c->tp = &transport_tls;
    c->proto = &protocol_handshake;
    return true;
}
