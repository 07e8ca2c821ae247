/* Closing after an answer. Closing a socket with unread input makes the
 * kernel send a reset, which can destroy the response just sent before the
 * client has read it. So the sending side is shut down and input is read
 * and dropped until the client closes or the caller's deadline passes
 * (the caller's event loop keeps the time and the readiness). */
#ifndef APPSTACK_LINGER_H
#define APPSTACK_LINGER_H

#include <stdbool.h>
#include <stddef.h>

#define AS_LINGER_SECONDS 2.0   /* a lingering connection is closed after this */

/* Shuts down FD's sending side. False: close it now instead. */
bool as_linger_begin(int fd);

/* Reads and drops what FD has (into BUF, CAP bytes, at most READS reads).
 * False when the client closed or the socket failed: close it now. */
bool as_linger_drain(int fd, char *buf, size_t cap, int reads);

#endif
