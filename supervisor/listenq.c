/* Reading a listening socket's accept queue (listenq.h). TCP says it in
 * TCP_INFO (tcpi_unacked is the accept queue of a socket in LISTEN). A
 * unix socket answers no socket option or ioctl with it: sock_diag does,
 * as the receive queue length of the listening socket (what `ss -xl`
 * shows as Recv-Q), looked up by the socket's inode. */
#include "listenq.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define TCP_LISTEN_STATE 10     /* include/net/tcp_states.h */

static int diag_fd = -1;
static __u32 diag_seq;

static long tcp_queue(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    return (long)ti.tcpi_unacked;
}

static bool diag_open(void)
{
    if (diag_fd >= 0)
        return true;
    diag_fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (diag_fd < 0) {
        as_warn("listen queue of unix sockets: netlink sock_diag: %s", strerror(errno));
        return false;
    }
    return true;
}

/* The UNIX_DIAG_RQLEN attribute of one unix_diag_msg. */
static long rqlen_of(const struct nlmsghdr *h)
{
    const struct unix_diag_msg *msg = NLMSG_DATA(h);
    int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof *msg);

    for (const struct rtattr *a = (const struct rtattr *)(msg + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= sizeof(struct unix_diag_rqlen))
            return (long)((const struct unix_diag_rqlen *)RTA_DATA(a))->udiag_rqueue;
    return -1;
}

static long unix_queue(int fd)
{
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } q;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    union {
        char buf[8192];
        struct nlmsghdr align;
    } r;
    struct stat st;
    ssize_t n;

    if (fstat(fd, &st) < 0 || !diag_open())
        return -1;
    memset(&q, 0, sizeof q);
    q.nlh.nlmsg_len = sizeof q;
    q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    q.nlh.nlmsg_flags = NLM_F_REQUEST;
    q.nlh.nlmsg_seq = ++diag_seq;
    q.req.sdiag_family = AF_UNIX;
    q.req.udiag_states = 1u << TCP_LISTEN_STATE;
    q.req.udiag_ino = (__u32)st.st_ino;
    q.req.udiag_show = UDIAG_SHOW_RQLEN;
    q.req.udiag_cookie[0] = q.req.udiag_cookie[1] = ~0u;   /* no cookie: by inode */
    if (sendto(diag_fd, &q, sizeof q, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return -1;
    /* The kernel answers at once, before sendto returns. */
    n = recv(diag_fd, r.buf, sizeof r.buf, MSG_DONTWAIT);
    for (struct nlmsghdr *h = &r.align; n > 0 && NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n))
        if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && h->nlmsg_seq == diag_seq)
            return rqlen_of(h);
    return -1;  /* NLMSG_ERROR: e.g. no sock_diag for unix sockets in this kernel */
}

long listen_queue(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    switch (ss.ss_family) {
    case AF_INET:
    case AF_INET6:
        return tcp_queue(fd);
    case AF_UNIX:
        return unix_queue(fd);
    default:
        return -1;
    }
}

void listen_queue_close(void)
{
    if (diag_fd >= 0)
        close(diag_fd);
    diag_fd = -1;
}
