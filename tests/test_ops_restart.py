"""Restarting appstack-proxy and appstackd under load while the listening
sockets stay open (held as systemd's .socket units hold them): connections
wait in the backlog instead of being refused; no GET or HEAD fails."""
from opsutil import assert_no_failures, ops_stack, under_load  # noqa: F401


def test_restart_appstackd_under_load(ops_stack):
    s = ops_stack(workers=2)
    masters = [s.master.pid]

    def restart(i):
        s.restart_master()
        masters.append(s.master.pid)

    res, n = under_load(s, 6, 2.0, restart)
    assert n >= 2 and len(set(masters)) == n + 1
    s.wait_serving()
    assert_no_failures(res, s)


def test_restart_proxy_under_load(ops_stack):
    s = ops_stack(workers=2)
    proxies = [s.proxy.pid]

    def restart(i):
        s.restart_proxy()
        proxies.append(s.proxy.pid)

    res, n = under_load(s, 6, 1.5, restart)
    assert n >= 3 and len(set(proxies)) == n + 1
    assert_no_failures(res, s)
