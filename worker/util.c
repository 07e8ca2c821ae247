/* Clocks and the blocking-with-timeout socket I/O
 * used while a request runs (the sockets themselves are non-blocking). */
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

double wk_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t wk_now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Waits for EVENTS on FD without holding the GIL, so that the app's own
 * threads run meanwhile. Returns 1 ready, 0 timeout, -1 error. */
int wk_wait(int fd, short events, double timeout)
{
    struct pollfd p = { .fd = fd, .events = events };
    double deadline = wk_now() + timeout;
    int rc;

    for (;;) {
        int ms = (int)((deadline - wk_now()) * 1000) + 1;
        if (ms <= 0)
            return 0;
        Py_BEGIN_ALLOW_THREADS
        rc = poll(&p, 1, ms);
        Py_END_ALLOW_THREADS
        if (rc >= 0 || errno != EINTR)
            break;
    }
    if (rc < 0)
        return -1;
    return rc;
}

/* Writes all of IOV (which it modifies). False when the client went away
 * or stalled for longer than the I/O timeout. */
bool wk_send_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (wk_wait(fd, POLLOUT, W.io_timeout) <= 0)
                    return false;
                continue;
            }
            return false;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return true;
}

/* Reads what is there, waiting up to the I/O timeout for something.
 * Returns bytes read, 0 at EOF, -1 on error or timeout. */
ssize_t wk_recv(int fd, char *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -1;
        if (wk_wait(fd, POLLIN, W.io_timeout) <= 0)
            return -1;
    }
}
