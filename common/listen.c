/* Listening sockets from systemd or bound here (appstack.ini(5) "listen"). */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define MAX_INHERITED 64

static struct {
    bool done;
    int n;
    int fd[MAX_INHERITED];
    char *name[MAX_INHERITED];
    bool claimed[MAX_INHERITED];
} inh;

bool as_addr_parse(const char *spec, struct as_addr *a, char *err, size_t errlen)
{
    char host[256];
    const char *port_s, *colon;
    char *end;
    long port;

    memset(a, 0, sizeof *a);
    if (!strncmp(spec, "unix:", 5)) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
        const char *path = spec + 5;
        if (path[0] != '/') {
            snprintf(err, errlen, "\"%s\": unix socket path must be absolute", spec);
            return false;
        }
        if (strlen(path) >= sizeof un->sun_path) {
            snprintf(err, errlen, "\"%s\": unix socket path longer than %zu bytes", spec, sizeof un->sun_path - 1);
            return false;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        a->is_unix = true;
        return true;
    }
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "\"%s\": expected [IPv6]:PORT", spec);
            return false;
        }
        if ((size_t)(close - spec - 1) >= sizeof host)
            goto bad;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port_s = close + 2;
    } else {
        colon = strrchr(spec, ':');
        if (!colon) {
            snprintf(err, errlen, "\"%s\": expected HOST:PORT, [IPv6]:PORT or unix:/PATH", spec);
            return false;
        }
        if ((size_t)(colon - spec) >= sizeof host)
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port_s = colon + 1;
    }
    errno = 0;
    port = strtol(port_s, &end, 10);
    if (!*port_s || *end || errno || port < 0 || port > 65535) {
        snprintf(err, errlen, "\"%s\": port must be a number from 0 to 65535", spec);
        return false;
    }
    if (spec[0] == '[') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            goto bad;
        a->len = sizeof *in6;
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&a->sa;
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        if (host[0] == '\0')
            in4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (!strcmp(host, "localhost"))
            in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
            goto bad;
        a->len = sizeof *in4;
    }
    return true;
bad:
    snprintf(err, errlen, "\"%s\": not an IP address (names other than localhost are not resolved)", spec);
    return false;
}

void as_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];

    switch (sa->sa_family) {
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        if (len <= offsetof(struct sockaddr_un, sun_path) || !un->sun_path[0])
            snprintf(buf, buflen, "unix:");
        else
            snprintf(buf, buflen, "unix:%.*s", (int)(len - offsetof(struct sockaddr_un, sun_path)), un->sun_path);
        break;
    }
    case AF_INET: {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        snprintf(buf, buflen, "%s:%u", host, ntohs(in4->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, buflen, "[%s]:%u", host, ntohs(in6->sin6_port));
        break;
    }
    default:
        snprintf(buf, buflen, "?");
    }
}

void as_inherited_init(void)
{
    char **names = NULL;
    int n;

    if (inh.done)
        return;
    inh.done = true;
    n = sd_listen_fds_with_names(1, &names);
    if (n <= 0)
        return;
    for (int i = 0; i < n; i++) {
        if (i < MAX_INHERITED) {
            inh.fd[i] = SD_LISTEN_FDS_START + i;
            inh.name[i] = names ? names[i] : NULL;
            /* Our children must not inherit what we do not hand them. */
            fcntl(inh.fd[i], F_SETFD, FD_CLOEXEC);
        } else if (names) {
            free(names[i]);
        }
    }
    inh.n = n < MAX_INHERITED ? n : MAX_INHERITED;
    free(names);
}

static bool same_addr(int fd, const struct as_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || ss.ss_family != a->sa.ss_family)
        return false;
    if (a->is_unix) {
        const struct sockaddr_un *x = (const struct sockaddr_un *)&ss, *y = (const struct sockaddr_un *)&a->sa;
        return !strncmp(x->sun_path, y->sun_path, sizeof x->sun_path);
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&ss, *y = (const struct sockaddr_in *)&a->sa;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&ss, *y = (const struct sockaddr_in6 *)&a->sa;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
}

static int find_inherited(const char *spec, const char *name_hint, const struct as_addr *a)
{
    /* A socket unit gives all its sockets its one FileDescriptorName= (80
     * and 443 both "http"): among those of the name, the one with the
     * address comes first. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < inh.n; i++) {
            if (inh.claimed[i] || !inh.name[i] || (pass == 0 && !same_addr(inh.fd[i], a)))
                continue;
            if (!strcmp(inh.name[i], spec) || (name_hint && !strcmp(inh.name[i], name_hint)))
                return i;
        }
    }
    for (int i = 0; i < inh.n; i++)
        if (!inh.claimed[i] && same_addr(inh.fd[i], a))
            return i;
    return -1;
}

/* mkdir -p of a Unix socket's directory (an instance's /run/appstack/NAME). */
static bool make_parent(const char *spec, const char *path, char *err, size_t errlen)
{
    char dir[sizeof ((struct sockaddr_un *)0)->sun_path];

    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create %s: %s", spec, dir, strerror(errno));
            return false;
        }
        *p = '/';
    }
    return true;
}

static int bind_new(const char *spec, const struct as_addr *a, int backlog, char *err, size_t errlen)
{
    int fd, one = 1;
    struct stat st;
    const char *path = ((const struct sockaddr_un *)&a->sa)->sun_path;

    fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", spec, strerror(errno));
        return -1;
    }
    if (a->is_unix) {
        if (!make_parent(spec, path, err, errlen))
            goto fail;
        /* A socket file left by a previous run is stale; anything else is not ours. */
        if (lstat(path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                snprintf(err, errlen, "%s: %s exists and is not a socket", spec, path);
                goto fail;
            }
            if (unlink(path) < 0) {
                snprintf(err, errlen, "%s: cannot remove stale socket: %s", spec, strerror(errno));
                goto fail;
            }
        }
    } else {
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
            snprintf(err, errlen, "%s: SO_REUSEADDR: %s", spec, strerror(errno));
            goto fail;
        }
        if (a->sa.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
            snprintf(err, errlen, "%s: IPV6_V6ONLY: %s", spec, strerror(errno));
            goto fail;
        }
    }
    if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
        snprintf(err, errlen, "%s: bind: %s", spec, strerror(errno));
        goto fail;
    }
    if (a->is_unix && chmod(path, 0666) < 0) {
        snprintf(err, errlen, "%s: chmod: %s", spec, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog) < 0) {
        snprintf(err, errlen, "%s: listen: %s", spec, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

int as_listen_open(const char *spec, const char *name_hint, int backlog,
                   bool *inherited, char *err, size_t errlen)
{
    struct as_addr a;
    int i;

    if (!as_addr_parse(spec, &a, err, errlen))
        return -1;
    as_inherited_init();
    i = find_inherited(spec, name_hint, &a);
    if (i >= 0) {
        inh.claimed[i] = true;
        *inherited = true;
        return inh.fd[i];
    }
    *inherited = false;
    return bind_new(spec, &a, backlog, err, errlen);
}

static int family_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    return getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ? -1 : ss.ss_family;
}

bool as_listen_refuse_new(int fd)
{
    /* A socket filter on the listener sees the packets of connections not
     * yet accepted (the queued ones are sockets of their own), from the
     * TCP header on. It drops a SYN without ACK, a new connection, and
     * keeps the rest: the last ACK of a handshake already under way must
     * pass, or that connection, already open for its client, would be
     * reset when the socket closes instead of queued and served. */
    static struct sock_filter drop_syn[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),             /* TCP flags */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x02, 0, 2),   /* SYN? */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x10, 1, 0),   /* and no ACK: */
        BPF_STMT(BPF_RET | BPF_K, 0),                       /* dropped */
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),              /* kept */
    };
    static const struct sock_fprog prog = { .len = 5, .filter = drop_syn };

    switch (family_of(fd)) {
    case AF_UNIX:
        /* connect() to a Unix socket shut down for reading is refused;
         * accept() still returns what is queued. */
        return shutdown(fd, SHUT_RD) == 0;
    case AF_INET:
    case AF_INET6:
        return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0;
    default:
        errno = ENOTSOCK;
        return false;
    }
}

size_t as_inherited_unclaimed(int *fds, size_t max)
{
    size_t k = 0;

    for (int i = 0; i < inh.n && k < max; i++)
        if (!inh.claimed[i])
            fds[k++] = inh.fd[i];
    return k;
}
