"""appstack-worker's contract with appstackd (common/scoreboard.h), played
by the test: channel messages, scoreboard slot, signals, max_requests."""
import json
import os
import signal
import socket
import threading
import time

import pytest

from conftest import APPS, free_port, wait_for, write_config
from workerutil import Conn, Worker, request, wait_exit, worker_config


def started(tmpdir, module="wsgiapp", env=None, app_extra=""):
    port = free_port()
    w = Worker(tmpdir, port, worker_config(tmpdir, port, module=module, app_extra=app_extra),
               env=env, master=True)
    w.start()
    return w


def test_ready_and_slot(tmpdir_short):
    w = started(tmpdir_short)
    try:
        assert w.read_channel() == "READY"
        s = w.slot()
        assert s["pid"] == w.proc.pid and s["state"] == "idle" and s["request_start"] == 0
        hb = s["heartbeat"]
        wait_for(lambda: w.slot()["heartbeat"] > hb, timeout=5, what="heartbeat while idle")
        # a request in progress is visible in the slot
        t = threading.Thread(target=request, args=(w.port,), kwargs={"path": "/sleep?1.5"})
        t.start()
        wait_for(lambda: w.slot()["state"] == "busy", timeout=5, what="busy slot")
        s = w.slot()
        assert (s["method"], s["path"]) == ("GET", "/sleep") and s["request_start"] > 0
        t.join()
        wait_for(lambda: w.slot()["state"] == "idle", timeout=5, what="idle slot")
        assert w.slot()["requests"] == 1 and w.slot()["request_start"] == 0
    finally:
        w.stop()


def test_no_descriptor_leaks_to_app_children(tmpdir_short):
    w = started(tmpdir_short)
    try:
        assert w.read_channel() == "READY"
        status, _, body = request(w.port, path="/inheritable-fds")
        assert status == 200 and json.loads(body) == []
    finally:
        w.stop()


@pytest.mark.parametrize("module,expect", [
    ("no_such_module", "ModuleNotFoundError: No module named 'no_such_module'"),
    ("wsgiapp:no_such_callable", "AttributeError"),
    ("broken_app", "ZeroDivisionError"),
])
def test_failed_import_reports_traceback(tmpdir_short, module, expect):
    with open(os.path.join(tmpdir_short, "broken_app.py"), "w") as f:
        f.write("import os\n\ndef helper():\n    return 1 / 0\n\napplication = helper()\n")
    w = started(tmpdir_short, module=module, app_extra=f"pythonpath = {tmpdir_short}")
    try:
        msg = w.read_channel()
        assert msg.startswith("FAILED\n")
        assert expect in msg
        if module == "broken_app":
            assert "Traceback (most recent call last):" in msg and "broken_app.py" in msg
        assert wait_exit(w.proc) == 1
        assert expect not in w.log()    # the master logs it: once
    finally:
        w.stop()


def test_sigterm_finishes_inflight_request(tmpdir_short):
    w = started(tmpdir_short)
    try:
        assert w.read_channel() == "READY"
        idle = Conn(w.port)
        idle.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
        idle.response()
        busy = Conn(w.port)
        busy.send(b"GET /sleep?1 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: w.slot()["path"] == "/sleep", timeout=5, what="busy")
        w.proc.send_signal(signal.SIGTERM)
        status, headers, body = busy.response()
        assert (status, body) == (200, b"slept\n")
        assert headers["connection"] == "close"
        assert idle.closed()
        assert wait_exit(w.proc) == 0
    finally:
        w.stop()


def test_sigquit_exits_at_once(tmpdir_short):
    w = started(tmpdir_short)
    try:
        assert w.read_channel() == "READY"
        busy = Conn(w.port)
        busy.send(b"GET /sleep?30 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: w.slot()["path"] == "/sleep", timeout=5, what="busy")
        w.proc.send_signal(signal.SIGQUIT)
        wait_exit(w.proc, timeout=5)
        busy.close()
    finally:
        w.stop()


def test_max_requests_marks_the_slot_and_serves_on(tmpdir_short):
    """At its limit a worker asks the master for a replacement (slot state
    recycle) and keeps serving, on the same keep-alive connection, until
    the master's SIGTERM."""
    w = started(tmpdir_short, env={"APPSTACK_MAX_REQUESTS": "3"})
    try:
        assert w.read_channel() == "READY"
        with Conn(w.port) as c:
            for i in range(1, 6):
                c.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
                status, headers, _ = c.response()
                assert status == 200 and headers.get("connection") != "close"
                want = "idle" if i < 3 else "recycle"
                wait_for(lambda: w.slot()["requests"] == i, timeout=5, what=f"{i} requests in the slot")
                assert w.slot()["state"] == want, (i, w.slot())
            assert w.alive()
            w.proc.send_signal(signal.SIGTERM)
            assert wait_exit(w.proc) == 0
    finally:
        w.stop()


def test_master_death_stops_worker(tmpdir_short):
    w = started(tmpdir_short)
    try:
        assert w.read_channel() == "READY"
        w.chan.close()
        w.chan = None
        assert wait_exit(w.proc, timeout=10) == 0
    finally:
        w.stop()


def test_timeout_contract_request_start_only_in_request(tmpdir_short):
    """Idle keep-alive connections never leave request_start set."""
    w = started(tmpdir_short)
    try:
        assert w.read_channel() == "READY"
        with Conn(w.port) as c:
            c.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
            c.response()
            c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Le")   # partial header
            time.sleep(0.5)
            s = w.slot()
            assert s["state"] == "idle" and s["request_start"] == 0
    finally:
        w.stop()


def test_standalone_help_and_bad_config(tmpdir_short):
    import subprocess
    from conftest import prog
    out = subprocess.run([prog("appstack-worker"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "-c" in out.stdout
    cfg = write_config(tmpdir_short, "[app]\nmodule = x\nbogus = 1\n")
    out = subprocess.run([prog("appstack-worker"), "-c", cfg], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and f"{cfg}:3:" in out.stderr
