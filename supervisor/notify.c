/* systemd's notification protocol (Type=notify). Without NOTIFY_SOCKET
 * every call is a cheap no-op inside libsystemd. */
#include "master.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

static void send_state(const char *state)
{
    int r = sd_notify(0, state);

    if (r < 0)
        as_warn("sd_notify(%s): %s", state, strerror(-r));
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    /* Reaching this callback is the proof that the loop still turns. */
    send_state("WATCHDOG=1");
}

void notify_init(struct master *m)
{
    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);

    if (r < 0)
        as_warn("WATCHDOG_USEC: %s", strerror(-r));
    if (r <= 0)
        return;
    ev_timer_init(&m->watchdog_w, watchdog_cb, 0, (ev_tstamp)usec / 2e6);
    ev_timer_start(m->loop, &m->watchdog_w);
}

void notify_ready(void)
{
    send_state("READY=1");
}

void notify_reloading(void)
{
    char msg[64];

    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)mono_usec());
    send_state(msg);
}

void notify_stopping(void)
{
    send_state("STOPPING=1");
}

void notify_status(struct master *m, const char *text)
{
    char msg[sizeof m->last_status + 8];

    if (!strcmp(text, m->last_status))
        return;
    snprintf(m->last_status, sizeof m->last_status, "%s", text);
    snprintf(msg, sizeof msg, "STATUS=%s", m->last_status);
    send_state(msg);
}
