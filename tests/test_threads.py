"""[supervisor] threads = N: each worker serves up to N requests at once on
Python threads, the GIL released while they wait. The scoreboard, supctl
status, the timeout, graceful stops and the stack dumps account for every
request of a worker."""
import http.client
import json
import re
import socket
import threading
import time

import pytest

from conftest import wait_for
from supervisorutil import get, sup_config, supervisor  # noqa: F401


def start(supervisor, tmpdir, port, threads=8, workers=1, **kw):
    cfg = sup_config(tmpdir, port, module="threads_app:application", workers=workers,
                     extra=f"threads = {threads}\n" + kw.pop("extra", ""), **kw)
    return supervisor(config=cfg, workers=workers)


def at_once(port, paths, timeout=30):
    """The answers to PATHS, all sent at once on their own connections:
    (status, body or None) each; an exception's name instead of a body
    when the connection ended without an answer."""
    out = [None] * len(paths)

    def one(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", paths[k], headers={"Connection": "close"})
            r = c.getresponse()
            out[k] = (r.status, json.loads(r.read()))
        except (OSError, http.client.HTTPException) as e:
            out[k] = (0, type(e).__name__)
        finally:
            c.close()
    ts = [threading.Thread(target=one, args=(k,)) for k in range(len(paths))]
    for t in ts:
        t.start()
        time.sleep(0.01)
    for t in ts:
        t.join(timeout + 5)
    return out


def test_eight_requests_overlap_on_one_worker(supervisor, tmpdir_short, port):
    start(supervisor, tmpdir_short, port, threads=8)
    answers = at_once(port, ["/sleep?0.2"] * 8)
    assert all(status == 200 for status, _ in answers), answers
    bodies = [b for _, b in answers]
    assert len({b["pid"] for b in bodies}) == 1
    assert len({b["thread"] for b in bodies}) == 8
    # Every request started before any ended: they ran at the same time.
    assert max(b["start"] for b in bodies) < min(b["end"] for b in bodies), bodies
    assert all(b["multithread"] for b in bodies)


def test_threads_1_serves_one_request_at_a_time(supervisor, tmpdir_short, port):
    start(supervisor, tmpdir_short, port, threads=1)
    bodies = [b for _, b in at_once(port, ["/sleep?0.1"] * 3)]
    spans = sorted((b["start"], b["end"]) for b in bodies)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    assert not any(b["multithread"] for b in bodies)


def test_status_shows_each_request_in_progress(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, threads=4)
    t = threading.Thread(target=at_once, args=(port, ["/sleep?1.5", "/sleep?1.5", "/sleep?1.5"]))
    t.start()
    try:
        w = wait_for(lambda: [w for w in s.status()["workers"] if len(w["active"]) == 3], timeout=10,
                     what="three requests in progress")[0]
        assert w["state"] == "busy" and w["request"]["path"] == "/sleep"
        assert len({a["thread"] for a in w["active"]}) == 3
        ages = [a["age"] for a in w["active"]]
        assert ages == sorted(ages, reverse=True)       # oldest first
        text = s.supctl("status").stdout
        assert len(re.findall(r"GET /sleep \(\d", text)) == 3, text
        r = s.supctl("dump")
        assert r.returncode == 0 and r.stdout.count("GET /sleep") == 3, r.stdout
        assert r.stdout.count("in application") >= 3, r.stdout
    finally:
        t.join(10)


def test_request_past_timeout_kills_the_worker_others_finish_or_fail_cleanly(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, threads=4, timeout=1.5)
    victim = s.ready_pids()[0]
    # /hang outlives the timeout; two short requests end before the kill;
    # the long one is in progress when it comes.
    answers = at_once(port, ["/hang", "/sleep?0.2", "/sleep?0.3", "/sleep?30"], timeout=40)
    assert answers[1][0] == 200 and answers[2][0] == 200, answers
    # Cut short with the worker: a clean end of the connection, never an answer.
    assert answers[0][0] == 0 and answers[3][0] == 0, answers
    s.wait_ready(1)
    assert victim not in s.ready_pids()
    log = s.log_text()
    kill = re.search(r"worker 1 \(pid %d\) killed: request GET /hang ran for [\d.]+ s \(timeout 1.5 s\) in thread "
                     r"(0x[0-9a-f]+)\n" % victim, log)
    assert kill, log[-3000:]
    # The stacks of every thread, the stuck one among them.
    assert f"Thread {kill.group(1)}" in log
    assert log.count("in application") >= 2, log[-3000:]
    assert s.status()["restarts"]["timeout"] == 1
    assert get(port, "/sleep?0")[0] == 200


def test_graceful_reload_finishes_every_request_in_flight(supervisor, tmpdir_short, port):
    s = start(supervisor, tmpdir_short, port, threads=4, workers=1)
    result = {}
    t = threading.Thread(target=lambda: result.update(a=at_once(port, ["/sleep?1"] * 4)))
    t.start()
    wait_for(lambda: any(len(w["active"]) == 4 for w in s.status()["workers"]), timeout=10,
             what="four requests in progress")
    r = s.supctl("reload")
    assert r.returncode == 0, r
    t.join(20)
    assert [status for status, _ in result["a"]] == [200] * 4, result


def test_loop_turns_while_requests_run(supervisor, tmpdir_short, port):
    # A request shorter than the timeout, however long, is no stuck loop:
    # the other threads keep serving and nobody is killed.
    s = start(supervisor, tmpdir_short, port, threads=2, timeout=1)
    t = threading.Thread(target=at_once, args=(port, ["/sleep?0.9"]))
    t.start()
    for _ in range(15):
        assert get(port, "/sleep?0.05")[0] == 200
    t.join(10)
    st = s.status()
    assert sum(st["restarts"].values()) == 0, st["restarts"]


@pytest.mark.parametrize("preload", ["off", "on"])
def test_threads_with_and_without_preload(supervisor, tmpdir_short, port, preload):
    start(supervisor, tmpdir_short, port, threads=4, workers=2, app_extra=f"preload = {preload}")
    bodies = [b for _, b in at_once(port, ["/sleep?0.3"] * 8)]
    assert len({b["pid"] for b in bodies}) == 2
    assert len({(b["pid"], b["thread"]) for b in bodies}) == 8


def test_a_trusted_proxy_learns_how_many_requests_a_worker_takes(supervisor, tmpdir_short, port):
    # appstack-proxy asks (common/worker_ident.h) and sends up to that many
    # requests at once to the worker.
    start(supervisor, tmpdir_short, port, threads=6)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /sleep?0 HTTP/1.1\r\nHost: t\r\nAppstack-Worker: ?\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert re.search(rb"\r\nAppstack-Worker: [0-9a-f]{16} 6\r\n", out, re.I), out


def test_a_new_connection_takes_its_turn_while_keepalive_ones_keep_every_thread_busy(
        supervisor, tmpdir_short, port):
    # Four keep-alive clients always have their next request waiting for
    # the worker's two threads; a new connection is served in turn with
    # them (within a few rounds of their requests), not after they stop.
    start(supervisor, tmpdir_short, port, threads=2)
    stop = threading.Event()
    starts = []     # app start times of the keep-alive clients' requests

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not stop.is_set():
                c.request("GET", "/sleep?0.05")
                r = c.getresponse()
                assert r.status == 200
                starts.append(json.loads(r.read())["start"])
        finally:
            c.close()
    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        wait_for(lambda: len(starts) >= 16, timeout=20, what="the keep-alive clients served")
        sent = time.monotonic()
        stopper = threading.Timer(5, stop.set)     # the old starvation ends when they stop
        stopper.start()
        status, body = at_once(port, ["/sleep?0"])[0]
        assert status == 200, body
    finally:
        stop.set()
        for t in clients:
            t.join(40)
    served_before = [t for t in starts if sent <= t < body["start"]]
    assert len(served_before) <= 12, (len(served_before), body["start"] - sent)
