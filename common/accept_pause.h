/* What a server does when accept4() fails, the same in every program that
 * accepts connections. Out of descriptors or memory, the queued connection
 * stays readable: watching the listening sockets would spin, so they rest
 * for AS_ACCEPT_PAUSE seconds, and the shortage is logged once a second at
 * most, with a count. */
#ifndef APPSTACK_ACCEPT_PAUSE_H
#define APPSTACK_ACCEPT_PAUSE_H

#define AS_ACCEPT_PAUSE 0.1     /* s the listening sockets rest */

enum as_accept_next {
    AS_ACCEPT_AGAIN,    /* that connection is gone (aborted, signal): try the next */
    AS_ACCEPT_DONE,     /* nothing more to accept now */
    AS_ACCEPT_PAUSE_NOW,/* out of descriptors or memory: stop watching for a while */
};

struct as_accept_pause {
    double last_warning;        /* of the shortage warning, in the caller's clock */
    unsigned long failures;     /* since then */
};

/* ERR is accept4()'s errno, NOW the caller's clock in seconds, OPEN the
 * connections it holds (for the warning). Logs what needs logging. */
enum as_accept_next as_accept_failed(struct as_accept_pause *p, int err, double now, long open);

#endif
