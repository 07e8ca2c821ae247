/* Response heads and small responses the proxy writes itself. */
#ifndef APPSTACK_PROXY_RESP_H
#define APPSTACK_PROXY_RESP_H

#include "proxy.h"

/* Status line, Server and Date into c->out; records the status for the log. */
void resp_head(struct conn *c, int status);
/* Connection header as c->keep_alive says, then the blank line. */
void resp_end_head(struct conn *c);
/* A whole short text/plain response; EXTRA is more header lines or NULL. */
void resp_simple(struct conn *c, int status, const char *extra);

#endif
