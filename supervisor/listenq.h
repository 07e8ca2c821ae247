/* The accept queue of a listening socket: connections the kernel has
 * completed that no worker has accepted yet. */
#ifndef APPSTACK_SUP_LISTENQ_H
#define APPSTACK_SUP_LISTENQ_H

/* Connections waiting on listening socket FD, or -1 when unknown. */
long listen_queue(int fd);
void listen_queue_close(void);

#endif
