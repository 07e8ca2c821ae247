/* Listening sockets: "unix:/path", "127.0.0.1:8000", "[::1]:8000",
 * "0.0.0.0:8000", ":8000". Taken from systemd (LISTEN_FDS, matched by
 * FileDescriptorName= or by address) or bound here. */
#ifndef APPSTACK_LISTEN_H
#define APPSTACK_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct as_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    bool is_unix;
};

/* Parses SPEC. On error returns false with a message in ERR. */
bool as_addr_parse(const char *spec, struct as_addr *addr, char *err, size_t errlen);

/* Formats the address of FD's local end ("unix:/p", "1.2.3.4:80", "[::1]:80"). */
void as_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);

/* Reads LISTEN_FDS/LISTEN_FDNAMES once (and unsets them, so children do not
 * see them). Safe to call more than once. */
void as_inherited_init(void);

/* Returns a listening socket for SPEC: an inherited one whose name equals
 * SPEC or NAME_HINT, or whose address matches; else a new socket bound and
 * listening (unix: a stale socket file is removed, mode 0666 unless MODE).
 * Returns -1 with a message in ERR. *INHERITED tells which happened. */
int as_listen_open(const char *spec, const char *name_hint, int backlog,
                   bool *inherited, char *err, size_t errlen);

/* Inherited sockets not claimed by any as_listen_open call (for warnings). */
size_t as_inherited_unclaimed(int *fds, size_t max);

/* A graceful stop of a listening socket this process bound: from now on no
 * new connection enters its queue (a Unix socket refuses it; a TCP socket
 * drops its SYN, and once closed refuses the retry), while the connections
 * already queued can still be accepted: the stopping server serves them
 * instead of leaving them to be reset when it closes the socket. Not for a
 * socket systemd holds: its queue outlives us and waits for the next start.
 * False with errno when the socket cannot be told. */
bool as_listen_refuse_new(int fd);

#endif
