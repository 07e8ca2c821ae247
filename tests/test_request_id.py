"""Request IDs from the edge to the traceback, in a real journald: the
proxy names every request (or keeps the X-Request-ID of a real_ip_from
front), returns the ID and logs it on the access entry; the worker's own
messages (the traceback of a view that raised), what the app prints and
the entry of a worker killed for its timeout carry the same
APPSTACK_REQUEST_ID."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import APPS, free_port, prog, wait_for, write_config
from systemdutil import Journald, journald_usable

pytestmark = pytest.mark.skipif(not journald_usable(), reason="needs root, unshare and systemd-journald")

FRONT = "127.0.0.2"     # the only real_ip_from address: requests from 127.0.0.1 are a client's


@pytest.fixture
def journal(tmpdir_short):
    j = Journald(tmpdir_short)
    try:
        yield j
    finally:
        j.stop()


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["workers = 2"])
def pool(request):
    """The [supervisor] lines of the stack's pool."""
    return request.param


@pytest.fixture
def stack(journal, tmpdir_short, pool):
    port = free_port()
    cfg = write_config(tmpdir_short, f"""
        [app]
        module = journal_app:application
        chdir = {APPS}

        [supervisor]
        listen = unix:{tmpdir_short}/app.sock
        {pool}
        timeout = 1
        control = {tmpdir_short}/control.sock

        [proxy]
        workers = 1
        listen = 127.0.0.1:{port}
        upstream = unix:{tmpdir_short}/app.sock
        real_ip_from = {FRONT}
        """)
    procs = [subprocess.Popen(journal.command("appstackd", [prog("appstackd"), "-c", cfg]),
                              stdin=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen(journal.command("appstack-proxy", [prog("appstack-proxy"), "-c", cfg]),
                                      stdin=subprocess.DEVNULL))
        wait_for(lambda: request(port, "/")[0] == 200, timeout=30, what="the stack to answer")
        yield port
    finally:
        for p in reversed(procs):
            stop(p)


def request(port, path, rid=None, source="127.0.0.1", method="GET"):
    """(status, X-Request-ID of the response); OSError counts as status 0."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    except OSError:
        return 0, None
    with s:
        extra = f"X-Request-ID: {rid}\r\n" if rid else ""
        body = "Content-Length: 0\r\n" if method == "POST" else ""
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}{body}Connection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return 0, None
            data += chunk
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    ids = re.findall(r"(?im)^x-request-id: *(\S+)", head)
    assert len(ids) == 1, head
    return int(head.split()[1]), ids[0]


def entries_with(journal, *matches, pred=lambda e: True, timeout=10):
    return wait_for(lambda: [e for e in journal.entries(*matches) if pred(e)], timeout=timeout,
                    what=f"journal entries {matches}")


def test_one_id_in_response_access_entry_and_traceback(journal, stack):
    marker = f"rid{os.getpid()}{time.monotonic_ns()}"
    status, rid = request(stack, "/raise?" + marker)
    assert status == 500
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    access = entries_with(journal, "HTTP_PATH=/raise", pred=lambda e: e.get("APPSTACK_REQUEST_ID") == rid)
    assert access[0]["HTTP_STATUS"] == "500"
    tb = entries_with(journal, "APPSTACK_REQUEST_ID=" + rid, "SYSLOG_IDENTIFIER=appstack-worker",
                      pred=lambda e: marker in e["MESSAGE"])
    assert len(tb) == 1 and "Traceback" in tb[0]["MESSAGE"], tb
    assert tb[0].get("APPSTACK_WORKER"), tb[0]
    # journalctl APPSTACK_REQUEST_ID=... tells the whole story: both.
    story = journal.entries("APPSTACK_REQUEST_ID=" + rid)
    assert {e["SYSLOG_IDENTIFIER"] for e in story} >= {"appstack-proxy", "appstack-worker"}, story
    # Another request has another ID, and the worker's messages about it
    # do not carry the first one.
    status, rid2 = request(stack, "/raise?" + marker + "b")
    assert rid2 != rid
    entries_with(journal, "APPSTACK_REQUEST_ID=" + rid2, "SYSLOG_IDENTIFIER=appstack-worker",
                 pred=lambda e: marker + "b" in e["MESSAGE"])
    assert not [e for e in journal.entries("APPSTACK_REQUEST_ID=" + rid) if marker + "b" in e["MESSAGE"]]


def test_app_output_carries_the_request_id(journal, stack):
    marker = f"out{os.getpid()}{time.monotonic_ns()}"
    _, rid = request(stack, "/print?" + marker)
    entries_with(journal, "APPSTACK_REQUEST_ID=" + rid, "MESSAGE=app-print " + marker)
    _, rid = request(stack, "/log?" + marker)
    entries_with(journal, "APPSTACK_REQUEST_ID=" + rid, "MESSAGE=app-log " + marker)


def appstackd_pid(tmpdir):
    """The appstackd whose configuration is under TMPDIR."""
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv[0].endswith(b"/appstackd") and any(tmpdir.encode() in a for a in argv):
            return int(pid)
    raise AssertionError("no appstackd")


def test_app_output_keeps_its_id_while_appstackd_is_slow(journal, stack, tmpdir_short):
    # appstackd does not run for 50 ms (a machine whose CPUs are all busy):
    # the worker waits for it to read what the app printed before the
    # request ends, so the line still carries the request's ID.
    marker = f"slow{os.getpid()}{time.monotonic_ns()}"
    pid = appstackd_pid(tmpdir_short)
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(0.05, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        status, rid = request(stack, "/print?" + marker)
    finally:
        resume.join()
        os.kill(pid, signal.SIGCONT)
    assert status == 200
    entries_with(journal, "APPSTACK_REQUEST_ID=" + rid, "MESSAGE=app-print " + marker)


def test_untrusted_id_is_replaced_a_fronts_is_kept(journal, stack):
    marker = f"tr{os.getpid()}{time.monotonic_ns()}"
    _, rid = request(stack, "/print?" + marker, rid="chosen-by-the-client")
    assert rid != "chosen-by-the-client" and re.fullmatch(r"[0-9a-f]{32}", rid)
    entries_with(journal, "APPSTACK_REQUEST_ID=" + rid, "MESSAGE=app-print " + marker)
    assert not journal.entries("APPSTACK_REQUEST_ID=chosen-by-the-client")
    # From the front server of real_ip_from: kept, to the app and the logs.
    front_id = f"lb-{marker}"
    _, rid = request(stack, "/print?" + marker + "f", rid=front_id, source=FRONT)
    assert rid == front_id
    entries_with(journal, "APPSTACK_REQUEST_ID=" + front_id, "MESSAGE=app-print " + marker + "f")
    entries_with(journal, "APPSTACK_REQUEST_ID=" + front_id, "SYSLOG_IDENTIFIER=appstack-proxy")
    # ... unless it is no usable ID (too long, or characters a log line
    # should not hold): then it is ours again.
    _, rid = request(stack, "/", rid="x" * 100, source=FRONT)
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    _, rid = request(stack, "/", rid="a\"b", source=FRONT)
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid


def test_timeout_kill_entry_carries_the_request_id(journal, stack):
    # POST: not retried on another worker, so one kill and a 502.
    status, rid = request(stack, "/sleep?30", method="POST")
    assert status == 502
    kill = entries_with(journal, "APPSTACK_REQUEST_ID=" + rid, "APPSTACK_CAUSE=timeout", timeout=20)
    assert "killed" in kill[0]["MESSAGE"] and "/sleep" in kill[0]["MESSAGE"], kill[0]


@pytest.mark.parametrize("pool", ["workers = 1\n        threads = 4"], indirect=True)
def test_each_request_thread_logs_with_its_own_id(journal, stack):
    # Two requests raise at the same time on two threads of one worker:
    # each traceback carries the ID of its own request.
    marker = f"thr{os.getpid()}{time.monotonic_ns()}"
    rids = {}

    def one(k):
        rids[k] = request(stack, f"/sleep-raise?{marker}-{k}")[1]
    ts = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert rids[0] and rids[1] and rids[0] != rids[1], rids
    for k in range(2):
        tb = entries_with(journal, "APPSTACK_REQUEST_ID=" + rids[k], "SYSLOG_IDENTIFIER=appstack-worker",
                          pred=lambda e: "Traceback" in e["MESSAGE"])
        assert len(tb) == 1 and f"{marker}-{k}" in tb[0]["MESSAGE"], tb
