/* wsload: the WebSocket benchmark's two ends, so that neither limits the
 * front being measured.
 *
 *   wsload echo PORT
 *       an upstream: answers each WebSocket handshake with 101 (with the
 *       right Sec-WebSocket-Accept), then echoes every byte it gets.
 *   wsload client PORT PATH CONNECTIONS SECONDS SIZE
 *       CONNECTIONS WebSocket connections to 127.0.0.1:PORT, each sending
 *       a masked binary message of SIZE bytes and waiting for its echo,
 *       again and again for SECONDS; prints
 *       "messages N seconds S rate R errors E".
 *
 * One epoll thread each; built by bench/benchlib/ws.py with cc -O2. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- echo ---- */

struct econn {
    int fd;
    int upgraded;
    size_t hlen;
    char head[4096];
};

static void accept_key(const char *head, char out[64])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const char *k = strcasestr(head, "\nSec-WebSocket-Key:");
    char key[128] = "";
    unsigned char sha[SHA_DIGEST_LENGTH];
    size_t n = 0;

    if (k) {
        k += 19;
        while (*k == ' ')
            k++;
        while (k[n] && k[n] != '\r' && n < 60)
            n++;
        memcpy(key, k, n);
    }
    memcpy(key + n, guid, sizeof guid);
    SHA1((unsigned char *)key, strlen(key), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

static __attribute__((noreturn)) void echo_main(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), ep = epoll_create1(0), one = 1;
    struct epoll_event ev = { .events = EPOLLIN }, evs[256];
    static char buf[BUF];

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0)
        die("echo: listen");
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct econn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            ssize_t r = recv(c->fd, c->upgraded ? buf : c->head + c->hlen,
                             c->upgraded ? BUF : sizeof c->head - 1 - c->hlen, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                close(c->fd);
                free(c);
                continue;
            }
            if (c->upgraded) {
                /* blocking-ish echo: the client waits for its echo before sending more */
                for (ssize_t off = 0; off < r;) {
                    ssize_t w = send(c->fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
                    if (w < 0 && errno == EAGAIN)
                        continue;
                    if (w < 0)
                        break;
                    off += w;
                }
                continue;
            }
            c->hlen += (size_t)r;
            c->head[c->hlen] = '\0';
            if (strstr(c->head, "\r\n\r\n")) {
                char key[64], resp[256];
                accept_key(c->head, key);
                int m = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", key);
                send(c->fd, resp, (size_t)m, MSG_NOSIGNAL);
                c->upgraded = 1;
            }
        }
    }
}

/* ---- client ---- */

struct cconn {
    int fd;
    int state;          /* 0 handshake, 1 waiting for the echo */
    size_t got;
    char head[1024];
};

static int client_main(int port, const char *path, int conns, double seconds, size_t size)
{
    int ep = epoll_create1(0), one = 1;
    struct epoll_event ev = { .events = EPOLLIN }, evs[256];
    struct cconn *cs = calloc((size_t)conns, sizeof *cs);
    size_t hdr = size < 126 ? 2 : size < 65536 ? 4 : 10, flen = hdr + 4 + size;
    unsigned char *frame = malloc(flen);
    static char buf[BUF];
    char req[512];
    long long messages = 0, errors = 0;
    int reqlen, open_conns = 0;
    double t0, end;

    frame[0] = 0x82;
    if (hdr == 2) {
        frame[1] = (unsigned char)(0x80 | size);
    } else if (hdr == 4) {
        frame[1] = 0x80 | 126;
        frame[2] = (unsigned char)(size >> 8);
        frame[3] = (unsigned char)size;
    } else {
        frame[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            frame[2 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i));
    }
    memcpy(frame + hdr, "\x12\x34\x56\x78", 4);
    for (size_t i = 0; i < size; i++)
        frame[hdr + 4 + i] = (unsigned char)('a' + i % 26) ^ frame[hdr + i % 4];
    reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n", path, port);
    for (int i = 0; i < conns; i++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("client: connect");
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        send(cs[i].fd, req, (size_t)reqlen, MSG_NOSIGNAL);
        ev.data.ptr = &cs[i];
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        open_conns++;
    }
    t0 = now();
    end = t0 + seconds;
    while (open_conns && now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct cconn *c = evs[i].data.ptr;
            ssize_t r = recv(c->fd, c->state ? buf : c->head + c->got,
                             c->state ? BUF : sizeof c->head - 1 - c->got, 0);
            if (r <= 0) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                open_conns--;
                continue;
            }
            if (!c->state) {
                c->got += (size_t)r;
                c->head[c->got] = '\0';
                if (!strstr(c->head, "\r\n\r\n"))
                    continue;
                if (strncmp(c->head, "HTTP/1.1 101", 12)) {
                    fprintf(stderr, "client: no 101: %.80s\n", c->head);
                    exit(1);
                }
                c->state = 1;
                c->got = 0;
                send(c->fd, frame, flen, MSG_NOSIGNAL);
                continue;
            }
            c->got += (size_t)r;
            while (c->got >= flen) {
                c->got -= flen;
                messages++;
                if (c->got == 0)
                    send(c->fd, frame, flen, MSG_NOSIGNAL);
            }
        }
    }
    double secs = now() - t0;
    printf("messages %lld seconds %.3f rate %.1f errors %lld\n", messages, secs, messages / secs, errors);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "echo"))
        echo_main(atoi(argv[2]));
    if (argc == 7 && !strcmp(argv[1], "client"))
        return client_main(atoi(argv[2]), argv[3], atoi(argv[4]), atof(argv[5]), (size_t)atol(argv[6]));
    fprintf(stderr, "usage: wsload echo PORT | wsload client PORT PATH CONNECTIONS SECONDS SIZE\n");
    return 2;
}
