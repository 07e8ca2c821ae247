"""Heartbeat liveness: a worker whose loop stops turning outside any request
(stopped by SIGSTOP, or a thread that holds the GIL in C between requests)
is killed and replaced within `timeout` + 1 s, logged with the cause and
counted in `supctl status`; keep-alive clients of the proxy see no error."""
import os
import re
import signal
import sys
import time

from conftest import SRCDIR, wait_for
from opsutil import ops_stack  # noqa: F401
from supervisorutil import get, supervisor  # noqa: F401

sys.path.insert(0, os.path.join(SRCDIR, "bench"))
from chaoslib.load import Probe  # noqa: E402

TIMEOUT = 1.5


def heartbeat_kill(s, victim, timeout=TIMEOUT):
    """Waits for the heartbeat kill of VICTIM; returns the age appstackd
    saw (how long the loop had not turned when it acted)."""
    line = wait_for(lambda: re.search(rf"\(pid {victim}\) killed: its loop has not turned for ([0-9.]+) s, "
                                      r"outside any request", s.log_text()),
                    timeout=timeout + 10, what="the heartbeat kill")
    return float(line.group(1))


def test_stopped_idle_worker_is_replaced(supervisor):
    s = supervisor(workers=2, timeout=TIMEOUT)
    before = s.ready_pids()
    victim = before[0]
    os.kill(victim, signal.SIGSTOP)
    t0 = time.monotonic()
    age = heartbeat_kill(s, victim)
    # The master's own clock: the loop's last turn was at most timeout/4
    # before the stop, and the check runs every 0.25 s.
    assert TIMEOUT <= age <= TIMEOUT + 1, age   # (rounded to 0.1 s in the log)
    wait_for(lambda: victim not in s.ready_pids() and len(s.ready_pids()) == 2, timeout=20,
             what="the replacement")
    assert time.monotonic() - t0 < TIMEOUT + 10
    assert s.status()["restarts"]["heartbeat"] == 1
    for _ in range(10):
        assert get(s.port)[0] == 200
    # The other worker, idle all along, was never suspected.
    assert before[1] in s.ready_pids()


def test_thread_holding_the_gil_between_requests(supervisor):
    s = supervisor(workers=1, timeout=TIMEOUT)
    victim = s.ready_pids()[0]
    status, body = get(s.port, "/gil-hog")
    assert status == 200
    age = heartbeat_kill(s, victim)
    assert TIMEOUT <= age <= TIMEOUT + 1, age   # (rounded to 0.1 s in the log)
    wait_for(lambda: len(s.ready_pids()) == 1 and victim not in s.ready_pids(), timeout=20,
             what="the replacement")
    assert get(s.port)[0] == 200
    restarts = s.status()["restarts"]
    assert restarts["heartbeat"] == 1 and restarts["timeout"] == 0, restarts


def test_idle_workers_with_a_short_timeout_are_left_alone(supervisor):
    """timeout = 0.4 s: idle workers turn their loop often enough."""
    s = supervisor(workers=2, timeout=0.4)
    pids = s.ready_pids()
    time.sleep(2)
    assert s.ready_pids() == pids
    assert "killed" not in s.log_text()


def test_proxy_clients_see_no_error_when_a_worker_stops(ops_stack):
    """Keep-alive clients through the proxy while a worker is stopped: the
    requests it holds are retried elsewhere once it is killed."""
    stack = ops_stack(workers=2, timeout=2)
    victim = stack.serving_pids()[0]
    probe = Probe("127.0.0.1", stack.port, conns=4, timeout=15)
    try:
        time.sleep(0.5)
        os.kill(victim, signal.SIGSTOP)
        wait_for(lambda: victim not in stack.serving_pids() and len(stack.serving_pids()) == 2, timeout=20,
                 what="the replacement")
        time.sleep(0.5)
    finally:
        res = probe.stop()
        latencies = sorted(probe.latencies)
    detail = f"{res['requests']} requests, {res['by_status']}, errors {res['errors']}, {res['failures'][:5]}"
    assert res["non2xx"] == 0 and res["sock_errors"] == 0, detail + stack.log_text(3000)
    assert res["requests"] > 50, detail
    # A request sent to the stopped worker waits for it to be killed, then
    # is retried: no longer than timeout + 1 s (+ slack for a loaded machine).
    assert latencies[-1] < 2 + 1.5, latencies[-5:]
