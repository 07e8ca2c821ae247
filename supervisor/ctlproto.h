/* The control socket's protocol, shared by appstackd and supctl.
 *
 * One command per connection. The client sends one line ("status",
 * "status --json", "reload", "scale 4", "scale +2", "scale -1", "dump",
 * "dump 3", "stop")
 * ending in "\n". appstackd answers with "OK\n" or "ERR\n", then free text,
 * then closes. A reload, dump or stop is answered only when it is done. */
#ifndef APPSTACK_CTLPROTO_H
#define APPSTACK_CTLPROTO_H

#define CTL_MAX_LINE 256
#define CTL_OK "OK\n"
#define CTL_ERR "ERR\n"

#endif
