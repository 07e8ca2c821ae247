/* tlsload: new TLS connections per second with a full handshake each.
 *
 *   tlsload PORT PATH CONNECTIONS SECONDS
 *       CONNECTIONS threads, each again and again for SECONDS: connect to
 *       127.0.0.1:PORT, a TLS handshake with a fresh SSL object that offers
 *       no session (so none can be resumed), "GET PATH" with
 *       "Connection: close", read to the end, close. Prints
 *       "requests N seconds S rate R errors E p50 X p99 Y" (ms).
 *
 * wrk cannot measure this: on a reconnection it keeps the connection's
 * SSL object, which offers the last session ticket, so a server that
 * issues tickets on resumption is never asked for a full handshake.
 * Built by bench/benchlib/tlsload.py with cc -O2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1 << 22)

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static char request[1024];
static size_t request_len;
static double deadline;
static float *samples;          /* latency of each connection, ms */
static atomic_long n_samples, n_errors;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One connection: true when it was answered 200 and closed. */
static bool one(void)
{
    char buf[16384];
    bool ok = false, first = true;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1, n;
    SSL *ssl = NULL;

    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        goto out;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (!(ssl = SSL_new(ctx)) || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1 ||
        SSL_write(ssl, request, (int)request_len) != (int)request_len)
        goto out;
    while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) {
        if (first && (n < 12 || memcmp(buf, "HTTP/1.1 200", 12)))
            goto out;
        first = false;
    }
    ok = !first && SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
    if (!ok && !first) {
        /* A server may close without close_notify after Connection: close. */
        unsigned long e = ERR_peek_last_error();
        ok = SSL_get_error(ssl, n) == SSL_ERROR_SYSCALL || ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    }
out:
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return ok;
}

static void *loop(void *arg)
{
    (void)arg;
    while (now() < deadline) {
        double t0 = now();

        if (one()) {
            long i = atomic_fetch_add(&n_samples, 1);
            if (i < MAX_SAMPLES)
                samples[i] = (float)((now() - t0) * 1e3);
        } else {
            atomic_fetch_add(&n_errors, 1);
        }
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int conns;
    double seconds, t0;
    pthread_t *t;
    long n, kept;

    if (argc != 5) {
        fprintf(stderr, "usage: tlsload PORT PATH CONNECTIONS SECONDS\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", argv[2]);
    conns = atoi(argv[3]);
    seconds = atof(argv[4]);
    if (conns < 1 || seconds <= 0 || request_len >= sizeof request) {
        fprintf(stderr, "tlsload: bad arguments\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    samples = calloc(MAX_SAMPLES, sizeof *samples);
    t = calloc((size_t)conns, sizeof *t);
    if (!ctx || !samples || !t) {
        fprintf(stderr, "tlsload: out of memory\n");
        return 1;
    }
    /* No session is ever kept or offered: every handshake is a full one. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    t0 = now();
    deadline = t0 + seconds;
    for (int i = 0; i < conns; i++)
        if (pthread_create(&t[i], NULL, loop, NULL)) {
            fprintf(stderr, "tlsload: cannot start thread %d\n", i);
            return 1;
        }
    for (int i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    seconds = now() - t0;
    n = atomic_load(&n_samples);
    kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    qsort(samples, (size_t)kept, sizeof *samples, cmp);
    printf("requests %ld seconds %.3f rate %.1f errors %ld p50 %.3f p99 %.3f\n", n, seconds, n / seconds,
           atomic_load(&n_errors), kept ? samples[kept / 2] : 0.0, kept ? samples[kept * 99 / 100] : 0.0);
    return 0;
}
