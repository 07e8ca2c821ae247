/* The worker's event loop: epoll over the shared listening sockets
 * (EPOLLEXCLUSIVE, so one connection wakes one idle worker and busy
 * workers leave new connections to idle ones), the keep-alive
 * connections, the signal pipe and the master's channel. With threads = 1
 * the loop serves a readable connection itself; with more it hands it to
 * a request thread (threads.c) and stops taking new connections while
 * every thread has one. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "accept_pause.h"
#include "listen.h"
#include "log.h"

#define MAX_EVENTS 64
#define DRAIN_GRACE 2.0   /* s a stopping worker waits for a first request */
#define TAKE_QUEUED_MAX 100000  /* bound on one pass over a queue */
/* At a stop of the whole server, the listen queue is taken until it has
 * been empty this long (a handshake under way takes one round trip to land
 * in it), for at most TAKE_QUEUED_SETTLE_MAX. */
#define TAKE_QUEUED_QUIET 0.05
#define TAKE_QUEUED_SETTLE_MAX 0.5

static enum wk_item sig_item = WK_SIGNAL, chan_item = WK_CHANNEL, parked_item = WK_PARKED;

static void on_term(int sig)
{
    int saved = errno;

    W.term = 1;
    if (write(W.sig_pipe[1], "", 1) < 0) {
        /* full pipe: the loop wakes up anyway */
    }
    errno = saved;
}

static void on_quit(int sig)
{
    _exit(0);
}

static bool set_handler(int sig, void (*fn)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART;   /* the app's own system calls carry on */
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0) {
        as_err("sigaction(%d): %s", sig, strerror(errno));
        return false;
    }
    return true;
}

static bool watch(int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = { .events = events, .data.ptr = ptr };

    if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        as_err("epoll_ctl(%d): %s", fd, strerror(errno));
        return false;
    }
    return true;
}

static bool prepare_listener(struct wk_listener *l)
{
    int flags = fcntl(l->fd, F_GETFL), one = 1;

    /* Another worker may take the connection between wake-up and accept. */
    if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        as_err("fcntl(listening socket %d): %s", l->fd, strerror(errno));
        return false;
    }
    /* Accepted sockets inherit it: no setsockopt per connection. */
    if (!l->is_unix && setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        as_warn("TCP_NODELAY on listening socket %d: %s", l->fd, strerror(errno));
    return true;
}

/* Whether every request thread has been busy for at least SECONDS. */
static bool full_for(double seconds)
{
    double now = wk_now();

    if (W.threads <= 1 || wk_threads_has_room()) {
        W.full_since = 0;
        return false;
    }
    if (W.full_since == 0)
        W.full_since = now;
    return now - W.full_since >= seconds;
}

/* The listening sockets are watched exactly while this worker takes new
 * connections: not stopping, not out of descriptors (accept_pause.h). By
 * the loop (epfd) while a request thread is free: leaving the sockets'
 * wait queues otherwise means no wake-up comes to a worker that would not
 * act on it (EPOLLEXCLUSIVE wakes one waiter). With threads > 1 and every
 * thread busy for WK_FULL_TAKES_NEW (sustained load: a free worker would
 * have taken what is queued by then), they are in the parked connections'
 * set instead, which nobody waits on: a thread that finishes finds a new
 * connection there in its turn, one per round of the parked connections'
 * next requests (conn.c wk_conn_take_waiting), so that neither starves the
 * other, and a worker takes new connections the less often the more of
 * its own are waiting. Before that, a worker that is busy for a moment
 * (a burst) leaves new connections to the workers that free up first. The
 * request threads call this after each connection while it is due.
 * The parked set itself is in epfd while a thread is free (stopping or
 * not), and only then: while every thread is busy, a connection's next
 * request does not wake the loop. */
void wk_listening_update(void)
{
    bool room = W.threads <= 1 || wk_threads_has_room();
    bool full_long = full_for(WK_FULL_TAKES_NEW);
    int want = W.stopping || W.term || W.accept_paused_until > 0 ? WK_LISTEN_NOWHERE
               : room                                           ? WK_LISTEN_LOOP
               : full_long                                      ? WK_LISTEN_PARKED
                                                                : WK_LISTEN_NOWHERE;

    for (int i = 0; want != W.listening && i < W.n_lst; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &W.lst[i] };
        if (W.listening != WK_LISTEN_NOWHERE &&
            epoll_ctl(W.listening == WK_LISTEN_LOOP ? W.epfd : W.parked_epfd, EPOLL_CTL_DEL, W.lst[i].fd, NULL) < 0)
            as_warn("epoll_ctl(DEL listening socket %d): %s", W.lst[i].fd, strerror(errno));
        ev.events |= want == WK_LISTEN_LOOP ? EPOLLEXCLUSIVE : EPOLLONESHOT;
        W.lst[i].disarmed = false;
        if (want != WK_LISTEN_NOWHERE &&
            epoll_ctl(want == WK_LISTEN_LOOP ? W.epfd : W.parked_epfd, EPOLL_CTL_ADD, W.lst[i].fd, &ev) < 0)
            as_err("epoll_ctl(listening socket %d): %s", W.lst[i].fd, strerror(errno));
    }
    W.listening = want;
    if (W.threads > 1 && room != W.watching_parked) {
        if (!W.watching_parked)
            W.watching_parked = watch(W.parked_epfd, EPOLLIN, &parked_item);
        else if (epoll_ctl(W.epfd, EPOLL_CTL_DEL, W.parked_epfd, NULL) < 0)
            as_warn("epoll_ctl(DEL parked connections): %s", strerror(errno));
        else
            W.watching_parked = false;
    }
}

/* The read buffer of a thread that serves requests. */
bool wk_request_buffers(struct wk_request *r)
{
    r->rbuf = malloc(WK_RBUF_SIZE);
    r->rpos = r->rlen = 0;
    if (!r->rbuf)
        as_err("out of memory for a request buffer");
    return r->rbuf != NULL;
}

bool wk_loop_init(void)
{
    W.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (W.epfd < 0) {
        as_err("epoll_create1: %s", strerror(errno));
        return false;
    }
    if (pipe2(W.sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        as_err("pipe2: %s", strerror(errno));
        return false;
    }
    if (!watch(W.sig_pipe[0], EPOLLIN, &sig_item))
        return false;
    if (W.channel_fd >= 0 && !watch(W.channel_fd, EPOLLIN, &chan_item))
        return false;
    for (int i = 0; i < W.n_lst; i++)
        if (!prepare_listener(&W.lst[i]))
            return false;
    signal(SIGPIPE, SIG_IGN);
    if (!set_handler(SIGTERM, on_term) || !set_handler(SIGQUIT, on_quit) || !set_handler(SIGINT, on_quit))
        return false;
    if (W.threads > 1) {
        W.parked_epfd = epoll_create1(EPOLL_CLOEXEC);
        if (W.parked_epfd < 0) {
            as_err("epoll_create1: %s", strerror(errno));
            return false;
        }
        if (!wk_threads_start())
            return false;
    }
    W.listening = WK_LISTEN_NOWHERE;
    wk_listening_update();
    return true;
}

static void drain_signal_pipe(void)
{
    char buf[64];

    while (read(W.sig_pipe[0], buf, sizeof buf) > 0)
        ;
}

/* The channel only ever closes: the master died, so we go too. */
static void on_channel(void)
{
    char buf[256];
    ssize_t n = recv(W.channel_fd, buf, sizeof buf, MSG_DONTWAIT);

    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    as_warn("the master's channel closed: stopping");
    epoll_ctl(W.epfd, EPOLL_CTL_DEL, W.channel_fd, NULL);
    close(W.channel_fd);
    W.channel_fd = -1;
    W.stopping = true;
}

/* Events of the batch in which a stop began are still served: a wake-up
 * this worker took for a connection is not given to any other worker. */
static void dispatch(struct epoll_event *ev)
{
    enum wk_item kind = *(enum wk_item *)ev->data.ptr;

    switch (kind) {
    case WK_LISTENER:
        wk_conn_accept(ev->data.ptr);
        break;
    case WK_CONN:
        wk_conn_readable(ev->data.ptr);
        break;
    case WK_PARKED:
        wk_threads_parked_waiting();
        break;
    case WK_SIGNAL:
        drain_signal_pipe();
        break;
    case WK_CHANNEL:
        on_channel();
        break;
    }
}

/* Out of descriptors (see accept_pause.h): the listening sockets leave
 * epoll for a moment. */
void wk_accept_pause(void)
{
    if (W.accept_paused_until > 0)
        return;
    W.accept_paused_until = wk_now() + AS_ACCEPT_PAUSE;
    wk_listening_update();
}

void wk_accept_resume_due(double now)
{
    if (W.accept_paused_until == 0 || now < W.accept_paused_until)
        return;
    W.accept_paused_until = 0;
    wk_listening_update();
}

/* Whether the master asked for the queue of listening socket I to be
 * taken: the whole server stops (common/scoreboard.h take_queued). */
static bool take_queue_of(int i)
{
    return W.sb && (W.sb->take_queued >> i) & 1;
}

/* The whole server stops gracefully: the master has closed the sockets it
 * bound to new connections where the kernel allows it (master_refuse_new),
 * and what is queued would be reset when the last process closes them, so
 * it is served now, each with Connection: close. A handshake under way at
 * the stop still completes into the queue (and without the socket filter,
 * new connections keep coming): the queue is taken until it has stayed
 * empty for TAKE_QUEUED_QUIET, each worker polling every such socket (the
 * queue is shared; whoever accepts first serves). A worker that stops
 * alone (reload, scale-down, max_requests) finds no bit set and leaves the
 * queue to the workers that stay. */
static void take_queued(void)
{
    struct pollfd p[WK_MAX_LISTEN];
    int idx[WK_MAX_LISTEN];
    double settled_by = wk_now() + TAKE_QUEUED_SETTLE_MAX;
    nfds_t n = 0;
    int r;

    for (int i = 0; i < W.n_lst; i++) {
        if (!take_queue_of(i))
            continue;
        p[n] = (struct pollfd){ .fd = W.lst[i].fd, .events = POLLIN };
        idx[n++] = i;
    }
    while (n > 0) {
        for (nfds_t k = 0; k < n; k++)
            for (int taken = 0; taken < TAKE_QUEUED_MAX && wk_conn_accept(&W.lst[idx[k]]); taken++)
                ;
        if (wk_now() >= settled_by)
            break;
        Py_BEGIN_ALLOW_THREADS     /* request threads serve what was taken */
        r = poll(p, n, (int)(TAKE_QUEUED_QUIET * 1000));
        Py_END_ALLOW_THREADS
        if (r < 0 && errno != EINTR) {
            as_err("poll on the listening sockets: %s", strerror(errno));
            break;
        }
        if (r == 0)
            break;
    }
}

/* A stopping worker accepts nothing more: its copies of the listening
 * sockets go at once rather than at exit, after the drain, so that at a
 * stop of the whole server the last worker to leave the queue ends each
 * socket (the master has closed its own, master_close_bound_sockets): no
 * handshake completes meanwhile on a socket nobody accepts from. */
static void close_listeners(void)
{
    for (int i = 0; i < W.n_lst; i++) {
        if (W.lst[i].fd < 0)
            continue;
        if (close(W.lst[i].fd) < 0)
            as_warn("close(listening socket %d): %s", W.lst[i].fd, strerror(errno));
        W.lst[i].fd = -1;
    }
}

/* Gives connections accepted but not yet spoken on a short time to send
 * their request, serving each with Connection: close. */
static void drain(void)
{
    struct epoll_event ev[MAX_EVENTS];
    double grace = W.cfg.graceful_timeout < DRAIN_GRACE ? W.cfg.graceful_timeout : DRAIN_GRACE;
    double deadline = wk_now() + grace;

    /* Request threads finish what they serve; what they hand back, and
     * what arrives meanwhile, is served or closed here. */
    while ((wk_conn_drain_all() > 0 && wk_now() < deadline) || (W.threads > 1 && !wk_threads_idle())) {
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(W.epfd, ev, MAX_EVENTS, 100);
        Py_END_ALLOW_THREADS
        if (n < 0 && errno != EINTR) {
            as_err("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            enum wk_item kind = *(enum wk_item *)ev[i].data.ptr;
            if (kind == WK_CONN)
                wk_conn_readable(ev[i].data.ptr);
            else if (kind == WK_PARKED)
                wk_threads_parked_waiting();
        }
        wk_slot_heartbeat();
    }
    if (W.threads > 1)
        wk_threads_stop();
}

/* Runs until SIGTERM, max_requests or the master's death; returns the
 * exit status. */
int wk_loop_run(void)
{
    struct epoll_event ev[MAX_EVENTS];

    for (;;) {
        double wait;
        int n;

        wk_slot_heartbeat();
        as_log_flush();     /* entries that waited for a stalled journal */
        if (W.term || W.stopping)
            break;
        wait = wk_conn_expire(wk_now());
        if (wait > W.heartbeat_every)
            wait = W.heartbeat_every;   /* the heartbeat must stay fresh while idle */
        wk_accept_resume_due(wk_now());
        if (W.accept_paused_until > 0 && wait > AS_ACCEPT_PAUSE)
            wait = AS_ACCEPT_PAUSE;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(W.epfd, ev, MAX_EVENTS, (int)(wait * 1000) + 1);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR)
                continue;
            as_err("epoll_wait: %s", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++)
            dispatch(&ev[i]);
    }
    W.stopping = true;
    wk_listening_update();  /* out of epoll before they close */
    if (W.term)
        take_queued();
    close_listeners();
    wk_slot_state(AS_SLOT_STOPPING);   /* the master's reload waits for this */
    drain();
    return 0;
}
