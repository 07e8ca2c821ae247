"""appstack-proxy's dispatch (docs/proxy.md, "Dispatch"): a request goes to a
worker that is free, or waits in the proxy, in order, until one is; it never
waits in the connection of a busy worker while another worker is idle. The
workers tell the proxy who they are (common/worker_ident.h), and only the
proxy."""
import os
import re
import signal
import socket
import threading
import time

from conftest import APPS, SRCDIR, wait_for
from opsutil import Stack
from workerutil import raw
from benchlib import mixed

BENCH_APPS = os.path.join(SRCDIR, "bench", "apps")


def start(tmpdir, workers, module="wsgiapp:application", chdir=APPS, proxy_extra=""):
    s = Stack(tmpdir, module=module, chdir=chdir, workers=workers)
    if proxy_extra:
        with open(s.ini, "a") as f:
            f.write(proxy_extra + "\n")
    return s.start()


def get(port, path, timeout=30):
    return raw(port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode(), timeout)


def proxy_log(stack):
    return "".join(open(p, errors="replace").read() for p in stack.logs if "appstack-proxy" in p)


def test_mixed_load_no_fast_request_waits_beside_an_idle_worker(tmpdir_short):
    # 95 % of requests take 1 ms, 5 % take 200 ms; 4 workers; keep-alive
    # clients at a fixed rate that keeps the workers about 70 % busy. A fast
    # request may wait while every worker is busy (that is a queue), never
    # while one of them sits idle: counted from the app's own start and end
    # times of every request on every worker.
    stack = start(tmpdir_short, 4, module="mixed:application", chdir=BENCH_APPS)
    try:
        samples = mixed.open_loop(stack.port, rate=240, duration=8, conns=64)
        ok = [s for s in samples if s.status == 200 and s.served()]
        assert len(ok) == len(samples) >= 1900, f"{len(samples) - len(ok)} failed\n{stack.log_text(3000)}"
        assert len({s.served()[0] for s in ok}) == 4, "not every worker served"
        # How long each one waited for a worker, as the proxy logged it: a
        # client stalled on a busy machine cannot make a wait look longer.
        wait_for(lambda: proxy_log(stack).count('"GET /') >= len(samples), timeout=10, what="access log")
        queue = {t: float(q) for t, q in re.findall(r'"GET (/\w+\?\d+) HTTP/1.1" 200 \d+ "-" "-" [\d.]+ ([\d.]+) unix:',
                                                    proxy_log(stack))}
        assert len(queue) == len(samples)
        waited = [s for s in ok if s.kind == "fast" and queue[s.target] > 0.02]
        bad = mixed.waits_beside_idle(samples, min_wait=0.1, min_idle=0.05, waited=queue)
        assert not bad, (f"{len(bad)} fast requests waited over 100 ms while a worker was idle for 50 ms "
                         f"or more ({len(waited)} waited over 20 ms at all)")
    finally:
        stack.stop()


def test_the_question_and_the_answer_stay_between_proxy_and_worker(tmpdir_short):
    stack = start(tmpdir_short, 2)
    try:
        out = raw(stack.port, b"GET /echo HTTP/1.1\r\nHost: t\r\nAppstack-Worker: ?\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200"), out[:300]
        assert b"100 Continue" not in out and b"appstack-worker" not in out.lower(), out[:600]
        assert b"HTTP_APPSTACK_WORKER" not in out
    finally:
        stack.stop()


def test_requests_wait_in_the_proxy_in_order_and_the_log_says_how_long(tmpdir_short):
    # One worker, busy for 1 s: the requests behind it wait (the first in
    # the socket's backlog, the others in the proxy) and the worker begins
    # them in the order they came; each is logged with its wait.
    stack = start(tmpdir_short, 1, module="mixed:application", chdir=BENCH_APPS)
    try:
        get(stack.port, "/")
        paths = ["/sleep?1"] + [f"/fast?{i}" for i in range(4)]
        bodies, sent = {}, {}

        def client(path):
            sent[path] = time.monotonic()       # the app's clock (bench/apps/mixed.py)
            bodies[path] = get(stack.port, path)
        threads = []
        for i, path in enumerate(paths):
            t = threading.Thread(target=client, args=(path,))
            t.start()
            threads.append(t)
            time.sleep(0.3 if i == 0 else 0.05)
        for t in threads:
            t.join(15)
        began = {p: float(bodies[p].split(b"\r\n\r\n", 1)[1].split()[1]) for p in paths}
        assert sorted(paths, key=began.get) == paths, began
        wait_for(lambda: proxy_log(stack).count("/fast?3") == 1, timeout=5, what="access log")
        entries = re.findall(r'"GET (/\S*) HTTP/1.1" (\d+) \d+ "-" "-" ([\d.]+) ([\d.]+) unix:', proxy_log(stack))
        waits = {p: (int(st), float(d), float(q)) for p, st, d, q in entries}
        for path in paths[1:]:
            # Each waited behind the slow one (how long depends on when its
            # thread got to send it), and the log says so.
            status, duration, queue = waits[path]
            waited = began[path] - sent[path]
            assert waited > 0.2, (path, waited)
            assert status == 200 and waited - 0.15 < queue <= duration + 0.01, (path, waited, waits[path])
    finally:
        stack.stop()


def test_waiting_longer_than_proxy_read_timeout_is_504(tmpdir_short):
    # The worker is held past the timeout: the first waiter times out in the
    # backlog, the ones behind it in the proxy, none later than the timeout.
    stack = start(tmpdir_short, 1, proxy_extra="proxy_read_timeout = 1")
    try:
        results = {}

        def one(path):
            t0 = time.monotonic()
            out = get(stack.port, path)
            results[path] = (out[:12], time.monotonic() - t0)
        paths = ["/sleep?3", "/pid?a", "/pid?b", "/pid?c"]
        threads = []
        for i, path in enumerate(paths):
            threads.append(threading.Thread(target=one, args=(path,)))
            threads[-1].start()
            time.sleep(0.3 if i == 0 else 0.05)
        for t in threads:
            t.join(15)
        assert all(out == b"HTTP/1.1 504" and took < 2.5 for out, took in results.values()), results
        assert "no worker free within 1s" in proxy_log(stack)
    finally:
        stack.stop()


def test_waiting_requests_survive_a_reload_and_a_client_that_leaves(tmpdir_short):
    stack = start(tmpdir_short, 1)
    try:
        results = []
        slow = threading.Thread(target=lambda: results.append(get(stack.port, "/sleep?1")))
        slow.start()
        time.sleep(0.3)
        # A client that gives up while it waits takes its place in the queue with it.
        with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as s:
            s.sendall(b"GET /pid?gone HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
        waiting = [threading.Thread(target=lambda: results.append(get(stack.port, "/pid")))
                   for _ in range(3)]
        for t in waiting:
            t.start()
        time.sleep(0.2)
        os.kill(stack.proxy.popen.pid, signal.SIGHUP)
        for t in [slow] + waiting:
            t.join(15)
        assert len(results) == 4 and all(r.startswith(b"HTTP/1.1 200") for r in results), results
        assert get(stack.port, "/pid").startswith(b"HTTP/1.1 200")
    finally:
        stack.stop()


def test_a_slow_request_leaves_the_last_worker_to_short_ones(tmpdir_short):
    # Two workers, /slow known to take 200 ms: a second /slow waits for the
    # first instead of taking the last worker, and a /fast that comes
    # meanwhile is served at once.
    stack = start(tmpdir_short, 2, module="mixed:application", chdir=BENCH_APPS)
    try:
        for path in ("/fast", "/slow", "/fast"):
            get(stack.port, path)           # the proxy learns how long they take
        out = {}

        def one(name, path):
            t0 = time.monotonic()
            body = get(stack.port, path).split(b"\r\n\r\n", 1)[1].split()
            out[name] = (t0, float(body[1]), float(body[2]))
        threads = []
        for name, path, pause in (("a", "/slow", 0.02), ("b", "/slow", 0.03), ("c", "/fast", 0)):
            threads.append(threading.Thread(target=one, args=(name, path)))
            threads[-1].start()
            time.sleep(pause)
        for t in threads:
            t.join(10)
        (a_sent, a_start, a_end), (b_sent, b_start, _), (c_sent, c_start, _) = out["a"], out["b"], out["c"]
        assert c_start - c_sent < 0.1, out      # the short one found the worker kept for it
        assert b_start >= a_end - 0.01, out     # the second slow one waited for the first
    finally:
        stack.stop()


def test_a_worker_that_dies_after_saying_who_it_is_is_retried_elsewhere(tmpdir_short):
    """The first request on a new connection to a worker: the worker's 1xx
    saying who it is arrives, then the worker dies in the request. The
    client has had nothing, so a GET is sent to another worker, as on a
    connection that broke before any byte."""
    stack = Stack(tmpdir_short, module="sup_app:application", workers=2).start()
    try:
        stack.restart_proxy()       # a proxy with no connection to any worker yet
        result = {}

        def client():
            result["out"] = get(stack.port, "/sleep?1.5")
        t = threading.Thread(target=client)
        t.start()
        busy = wait_for(lambda: [w for w in stack.status()["workers"] if w["state"] == "busy"], timeout=10,
                        what="a busy worker")
        os.kill(busy[0]["pid"], signal.SIGKILL)
        t.join(30)
        out = result["out"]
        assert out.startswith(b"HTTP/1.1 200"), (out[:300], proxy_log(stack))
        assert int(out.split()[-1]) != busy[0]["pid"]
    finally:
        stack.stop()
