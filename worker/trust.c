/* Who may set X-Forwarded-For, X-Forwarded-Proto and SCRIPT_NAME.
 *
 * With [supervisor] forwarded_allow_ips, the peers it names (addresses,
 * networks, "unix", "*"), as in gunicorn. Without it, only the proxy: a
 * peer on this host whose process runs as root, as the workers' own user,
 * as [proxy] user, or in [proxy] group or in the group of the unix socket
 * it connected to (the shipped units give the proxy's group that socket).
 * The kernel says who the peer is: SO_PEERCRED on a unix socket, the
 * owner of the peer's socket (sock_diag) on a loopback TCP connection. So
 * another local user cannot set REMOTE_ADDR or the URL scheme by default,
 * while the proxy can, over either kind of socket (docs/security.md).
 *
 * [proxy] real_ip_from, the front servers the proxy trusts, is read here
 * too: REMOTE_ADDR is the last X-Forwarded-For address that is not one of
 * them (nginx's real_ip_recursive). */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "netmask.h"

#define MAX_IDS 8

static struct {
    bool by_credentials;        /* the default: recognise the proxy */
    uid_t uids[MAX_IDS];
    int n_uids;
    gid_t gids[MAX_IDS];
    int n_gids;
    struct as_net *nets;        /* forwarded_allow_ips */
    size_t n_nets;
    bool unix_peers;            /* forwarded_allow_ips has "unix" or "*" */
    struct as_net *fronts;      /* [proxy] real_ip_from */
    size_t n_fronts;
    bool diag_warned;
} T;

static void add_uid(uid_t u)
{
    for (int i = 0; i < T.n_uids; i++)
        if (T.uids[i] == u)
            return;
    if (T.n_uids < MAX_IDS)
        T.uids[T.n_uids++] = u;
}

static void add_gid(gid_t g)
{
    for (int i = 0; i < T.n_gids; i++)
        if (T.gids[i] == g)
            return;
    if (T.n_gids < MAX_IDS)
        T.gids[T.n_gids++] = g;
}

static bool add_nets(const struct as_strlist *l, const char *key, struct as_net **v, size_t *n, bool *unix_peers)
{
    for (size_t i = 0; i < l->n; i++) {
        /* One key may list several, comma-separated, as gunicorn users write it. */
        char *copy = strdup(l->v[i]), *save = NULL;
        if (!copy)
            return false;
        for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            struct as_net net;
            void *p;
            if (unix_peers && !strcmp(t, "unix")) {
                *unix_peers = true;
                continue;
            }
            if (!as_net_parse(t, &net)) {
                as_err("%s:%d: %s: \"%s\" is not an IP address, network or *", W.cfg.path, l->line[i], key, t);
                free(copy);
                return false;
            }
            if (unix_peers && net.family == AF_UNSPEC)
                *unix_peers = true;
            if (!(p = realloc(*v, (*n + 1) * sizeof **v))) {
                free(copy);
                return false;
            }
            *v = p;
            (*v)[(*n)++] = net;
        }
        free(copy);
    }
    return true;
}

/* The group of each unix socket we listen on: who the socket is for. */
static void socket_groups(void)
{
    for (int i = 0; i < W.n_lst; i++) {
        struct sockaddr_un sun;
        socklen_t len = sizeof sun;
        struct stat st;

        if (!W.lst[i].is_unix || getsockname(W.lst[i].fd, (struct sockaddr *)&sun, &len) < 0 ||
            len <= offsetof(struct sockaddr_un, sun_path) || sun.sun_path[0] == '\0')
            continue;
        sun.sun_path[sizeof sun.sun_path - 1] = '\0';
        if (stat(sun.sun_path, &st) == 0 && st.st_gid != 0)
            add_gid(st.st_gid);
    }
}

bool wk_trust_init(void)
{
    const struct as_config *c = &W.cfg;

    if (!add_nets(&c->real_ip_from, "real_ip_from", &T.fronts, &T.n_fronts, NULL))
        return false;
    if (c->forwarded_allow_ips.n > 0)
        return add_nets(&c->forwarded_allow_ips, "forwarded_allow_ips", &T.nets, &T.n_nets, &T.unix_peers);
    T.by_credentials = true;
    add_uid(0);
    add_uid(geteuid());
    if (c->proxy_user && *c->proxy_user) {
        struct passwd *pw = getpwnam(c->proxy_user);
        if (pw) {
            add_uid(pw->pw_uid);
            add_gid(pw->pw_gid);
        }
    }
    if (c->proxy_group && *c->proxy_group) {
        struct group *gr = getgrnam(c->proxy_group);
        if (gr)
            add_gid(gr->gr_gid);
    }
    socket_groups();
    return true;
}

static bool uid_trusted(uid_t u)
{
    for (int i = 0; i < T.n_uids; i++)
        if (T.uids[i] == u)
            return true;
    return false;
}

static bool gid_trusted(gid_t g)
{
    for (int i = 0; i < T.n_gids; i++)
        if (T.gids[i] == g)
            return true;
    return false;
}

/* The uid owning the other end of a loopback TCP connection FD (whose
 * peer is SA), from the kernel's socket table; -1 when unknown. */
static long tcp_peer_uid(int fd, const struct sockaddr *peer)
{
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
    char buf[8192];
    long uid = -1;
    int s;
    ssize_t n;

    if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0)
        return -1;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = (uint8_t)peer->sa_family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    /* The peer's socket: its source is our peer, its destination is us. */
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *p = (const void *)peer, *l = (const void *)&local;
        msg.req.id.idiag_sport = p->sin_port;
        msg.req.id.idiag_dport = l->sin_port;
        memcpy(msg.req.id.idiag_src, &p->sin_addr, 4);
        memcpy(msg.req.id.idiag_dst, &l->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *p = (const void *)peer, *l = (const void *)&local;
        msg.req.id.idiag_sport = p->sin6_port;
        msg.req.id.idiag_dport = l->sin6_port;
        memcpy(msg.req.id.idiag_src, &p->sin6_addr, 16);
        memcpy(msg.req.id.idiag_dst, &l->sin6_addr, 16);
    }
    msg.req.id.idiag_cookie[0] = msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s < 0) {
        if (!T.diag_warned)
            as_warn("cannot ask the kernel who a local peer is (socket(AF_NETLINK): %s): loopback TCP peers "
                    "are not trusted with X-Forwarded-*; use a unix socket or forwarded_allow_ips", strerror(errno));
        T.diag_warned = true;
        return -1;
    }
    if (sendto(s, &msg, sizeof msg, 0, (struct sockaddr *)&nl, sizeof nl) == (ssize_t)sizeof msg &&
        (n = recv(s, buf, sizeof buf, 0)) > 0) {
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
                uid = ((struct inet_diag_msg *)NLMSG_DATA(h))->idiag_uid;
                break;
            }
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR)
                break;
        }
    }
    close(s);
    return uid;
}

static bool loopback(const struct sockaddr *sa)
{
    static const unsigned char v6[16] = { [15] = 1 }, mapped[12] = { [10] = 0xff, [11] = 0xff };

    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        return !memcmp(a, v6, 16) || (!memcmp(a, mapped, 12) && a[12] == 127);
    }
    return false;
}

bool wk_peer_trusted(int fd, const struct sockaddr *sa)
{
    if (!T.by_credentials)
        return sa->sa_family == AF_UNIX ? T.unix_peers : as_nets_match_sa(T.nets, T.n_nets, sa);
    if (sa->sa_family == AF_UNIX) {
        struct ucred cred;
        socklen_t len = sizeof cred;
        return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
               (uid_trusted(cred.uid) || gid_trusted(cred.gid));
    }
    if (loopback(sa)) {
        long uid = tcp_peer_uid(fd, sa);
        return uid >= 0 && uid_trusted((uid_t)uid);
    }
    return false;
}

bool wk_front_trusted(const char *addr, size_t len)
{
    return as_nets_match_text(T.fronts, T.n_fronts, addr, len);
}
