/* Shut down, drain, close (see linger.h). */
#include "linger.h"

#include <errno.h>
#include <sys/socket.h>

bool as_linger_begin(int fd)
{
    return shutdown(fd, SHUT_WR) == 0;
}

bool as_linger_drain(int fd, char *buf, size_t cap, int reads)
{
    for (int i = 0; i < reads; i++) {
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false;
    }
    return true;
}
