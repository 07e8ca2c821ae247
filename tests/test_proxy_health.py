"""appstack-proxy over several upstreams: least outstanding requests,
passive health (max_fails within fail_timeout, then one trial request),
active health checks (health_check), retries of what is safe on another
upstream, draining of an upstream a reload drops; and --check of the
options (docs/proxy.md, "Several upstreams")."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, prog, wait_for
from proxyutil import Upstream, get, ok, proxy_config, Proxy, start_proxy

GOOD = "[proxy]\nlisten = 127.0.0.1:{port}\nupstream = 127.0.0.1:9\n"
# (name, option line, words the message must contain); the option is on line 4
BAD = [
    ("max_fails not a number", "max_fails = many", 'max_fails: "many" is not a whole number'),
    ("max_fails negative", "max_fails = -1", 'max_fails: "-1" is not a whole number from 0'),
    ("fail_timeout zero", "fail_timeout = 0", 'fail_timeout: "0" is not a duration above 0'),
    ("fail_timeout not a duration", "fail_timeout = soon", 'fail_timeout: "soon" is not a duration'),
    ("health_check without a slash", "health_check = healthz", 'health_check: "healthz" is not off or a path'),
    ("health_check with a blank", "health_check = /a b", 'health_check: "/a b" is not off or a path'),
    ("health_check_interval zero", "health_check_interval = 0",
     'health_check_interval: "0" is not a duration above 0'),
]


@pytest.mark.parametrize("name,line,words", BAD, ids=[b[0] for b in BAD])
def test_bad_option_check(tmpdir_short, name, line, words):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(GOOD.format(port=free_port()) + line + "\n")
    r = subprocess.run([prog("appstack-proxy"), "--check", "-c", path], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1, r
    assert f"{path}:4: " in r.stderr and words in r.stderr, r.stderr


def test_good_options_check(tmpdir_short):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(GOOD.format(port=free_port()) + "max_fails = 0\nfail_timeout = 30s\nhealth_check = /healthz\n"
                "health_check_interval = 0.5\n")
    r = subprocess.run([prog("appstack-proxy"), "--check", "-c", path], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def body_of(port, path="/", method="GET", body=b""):
    r = get(port, path, method=method, body=body)
    return r.status, r.body


def refusals(proxy, port):
    """Connects to PORT refused, as logged (at once or once the connect ends)."""
    return sum(1 for line in proxy.log_text().splitlines()
               if f"upstream 127.0.0.1:{port}: " in line and "Connection refused" in line)


def test_max_fails_within_fail_timeout_then_one_trial_request(tmpdir_short):
    down = closed_port()
    b = Upstream(lambda req: ok(b"B"))
    proxy = start_proxy(tmpdir_short, [f"127.0.0.1:{down}", b.addr], extra="max_fails = 3\nfail_timeout = 1.5")
    try:
        # Each request tried on the refusing upstream goes to the other one:
        # nothing was sent. The third refusal takes it out.
        for _ in range(12):
            assert body_of(proxy.port) == (200, b"B")
        assert refusals(proxy, down) == 3
        assert "out for 1.5s" in proxy.log_text()
        # Back in after fail_timeout, on trial: one failure takes it out again.
        time.sleep(1.7)
        for _ in range(6):
            assert body_of(proxy.port) == (200, b"B")
        assert refusals(proxy, down) == 4
        assert proxy.log_text().count("out for 1.5s") == 2
    finally:
        proxy.stop()
        b.close()


def test_an_upstream_that_comes_back_rejoins(tmpdir_short):
    port = closed_port()
    b = Upstream(lambda req: ok(b"B"))
    proxy = start_proxy(tmpdir_short, [f"127.0.0.1:{port}", b.addr], extra="fail_timeout = 1")
    a = None
    try:
        assert [body_of(proxy.port)[1] for _ in range(4)] == [b"B"] * 4
        a = Upstream(lambda req: ok(b"A"), port=port)
        time.sleep(1.2)
        bodies = [body_of(proxy.port)[1] for _ in range(8)]
        assert bodies.count(b"A") >= 3 and bodies.count(b"B") >= 3, bodies
        wait_for(lambda: f"upstream 127.0.0.1:{port}: answers again" in proxy.log_text(), timeout=5,
                 what="the log to say it is back")
    finally:
        proxy.stop()
        b.close()
        if a:
            a.close()


def test_health_check_takes_an_upstream_out_and_back(tmpdir_short):
    sick = threading.Event()

    def handler(req):
        if req.target == "/healthz":
            return ok(b"no", status="503 Service Unavailable") if sick.is_set() else ok(b"fine")
        return ok(b"A")
    a = Upstream(handler)
    b = Upstream(lambda req: ok(b"B"))
    proxy = start_proxy(tmpdir_short, [a.addr, b.addr], extra="health_check = /healthz\nhealth_check_interval = 0.3")
    try:
        wait_for(lambda: any(r.target == "/healthz" for r in a.requests), timeout=5, what="a health check")
        check = next(r for r in a.requests if r.target == "/healthz")
        assert check.method == "GET" and check.header("Host") == [a.addr]
        assert "health check" in check.header("User-Agent")[0]
        assert b"A" in [body_of(proxy.port)[1] for _ in range(6)]
        sick.set()
        wait_for(lambda: "health check GET /healthz: answered 503: out" in proxy.log_text(), timeout=5,
                 what="the check to fail")
        assert [body_of(proxy.port)[1] for _ in range(6)] == [b"B"] * 6
        sick.clear()
        wait_for(lambda: "health check passes: back in" in proxy.log_text(), timeout=5, what="the check to pass")
        assert b"A" in [body_of(proxy.port)[1] for _ in range(6)]
    finally:
        proxy.stop()
        a.close()
        b.close()


def test_no_answer_in_time_is_retried_elsewhere_only_when_safe(tmpdir_short):
    def hang(req):
        def wait(sock):
            time.sleep(3)
            return False
        return wait
    a = Upstream(hang)
    b = Upstream(lambda req: ok(b"B"))
    # max_fails = 0: the hanging upstream stays in, so that both methods meet it.
    proxy = start_proxy(tmpdir_short, [a.addr, b.addr], extra="proxy_read_timeout = 1\nmax_fails = 0")
    try:
        for i in range(2):
            t0 = time.monotonic()
            assert body_of(proxy.port, f"/get-{i}") == (200, b"B")
            assert time.monotonic() - t0 < 2.5
        assert [r.target for r in a.requests] == ["/get-0", "/get-1"]     # each met A, then went to B
        statuses = [body_of(proxy.port, f"/post-{i}", method="POST", body=b"x")[0] for i in range(2)]
        assert sorted(statuses) == [200, 504], statuses      # the one on A is not sent again
        assert len([r for r in b.requests if r.target.startswith("/post")]) == 1
    finally:
        proxy.stop()
        a.close()
        b.close()


def test_least_outstanding_requests(tmpdir_short):
    def handler(name):
        def h(req):
            if req.target == "/slow":
                time.sleep(1.5)
            return ok(name)
        return h
    a = Upstream(handler(b"A"))
    b = Upstream(handler(b"B"))
    proxy = start_proxy(tmpdir_short, [a.addr, b.addr])
    try:
        slow = {}
        t = threading.Thread(target=lambda: slow.setdefault("body", body_of(proxy.port, "/slow")[1]))
        t.start()
        wait_for(lambda: any(r.target == "/slow" for r in a.requests + b.requests), timeout=5, what="/slow")
        busy = b"A" if any(r.target == "/slow" for r in a.requests) else b"B"
        # Round robin would alternate; the upstream with /slow in flight gets none.
        bodies = [body_of(proxy.port, f"/fast{i}")[1] for i in range(4)]
        assert busy not in bodies, (busy, bodies)
        t.join(10)
        assert slow["body"] == busy
    finally:
        proxy.stop()
        a.close()
        b.close()


def test_reload_drains_an_upstream_it_no_longer_names(tmpdir_short):
    def handler(name):
        def h(req):
            if req.target == "/slow":
                time.sleep(1)
            return ok(name)
        return h
    a = Upstream(handler(b"A"))
    b = Upstream(handler(b"B"))
    port = free_port()
    cfg = proxy_config(tmpdir_short, port, [a.addr, b.addr])
    proxy = Proxy(cfg, port)
    try:
        for _ in range(4):
            body_of(port)              # both have idle connections now
        slow = {}
        while True:                    # a request in flight on A
            t = threading.Thread(target=lambda: slow.update(r=body_of(port, "/slow")))
            t.start()
            time.sleep(0.2)
            if any(r.target == "/slow" for r in a.requests):
                break
            t.join(5)
        proxy_config(tmpdir_short, port, [b.addr])
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in proxy.log_text(), timeout=5, what="the reload")
        seen = len(a.requests)
        assert [body_of(port)[1] for _ in range(6)] == [b"B"] * 6
        t.join(5)
        assert slow["r"] == (200, b"A")            # finished where it started
        assert len(a.requests) == seen             # nothing new went to A
    finally:
        proxy.stop()
        a.close()
        b.close()
