/* The control socket's protocol, shared by appstackd and supctl.
 *
 * One command per connection. The client sends one line ("status",
 * "status --json", "reload", "scale 4", "scale +2", "scale -1", "dump",
 * "dump 3", "stop")
 * ending in "\n". appstackd answers with "OK\n" or "ERR\n", then free text,
 * then closes. A reload, dump or stop is answered only when it is done.
 *
 * "top" (for supctl top) answers tab-separated lines:
 *   appstackd PID UPTIME NOW(monotonic s) GENERATION READY TARGET REQUESTS
 *     ERRORS(5xx) RELOADING STOPPING LISTEN_QUEUE(-1 unknown)
 *     "crash=N timeout=N ..." RELOADS_OK RELOADS_FAILED
 *   worker ID PID GENERATION STATE REQUESTS ERRORS RSS(bytes, -1) CPU(s, -1)
 *     AGE METHOD REQUEST_ID PATH          (the last four "-" when idle) */
#ifndef APPSTACK_CTLPROTO_H
#define APPSTACK_CTLPROTO_H

#define CTL_MAX_LINE 256
#define CTL_OK "OK\n"
#define CTL_ERR "ERR\n"

#endif
