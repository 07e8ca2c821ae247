"""The Python stacks of stuck and live workers. A worker killed for a
request past `timeout` or a dead heartbeat leaves ONE journal entry (real
journald) with its worker, generation, pid, the request's method, path and
duration and the stack of each thread, or why there is none; `supctl dump`
shows the current frame of live workers without stopping them."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import APPS, prog, wait_for
from supervisorutil import copy_app, get, sup_config, supervisor  # noqa: F401
from systemdutil import Journald, journald_usable

TIMEOUT = 1.5
APP = os.path.join(APPS, "sup_app.py")


def line_of(text, path=APP):
    """The line number of TEXT in PATH (the app's source)."""
    with open(path) as f:
        return next(n for n, line in enumerate(f, 1) if text in line)


# -- the kill entry, in a real journal ---------------------------------------

needs_journald = pytest.mark.skipif(not journald_usable(), reason="needs root, unshare and systemd-journald")


@pytest.fixture
def journal_sup(tmpdir_short, port):
    """appstackd on a real journald (as systemd runs it): (journal, port, supctl)."""
    journal = Journald(tmpdir_short)
    cfg = sup_config(tmpdir_short, port, workers=2, timeout=TIMEOUT)
    proc = subprocess.Popen(journal.command("appstackd", [prog("appstackd"), "-c", cfg]), stdin=subprocess.DEVNULL)

    def supctl(*args):
        return subprocess.run([prog("supctl"), "-c", cfg, *args], capture_output=True, text=True, timeout=30)

    try:
        wait_for(lambda: supctl("status").returncode == 0 and get(port)[0] == 200, timeout=30, what="appstackd")
        yield journal, port, supctl
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        journal.stop()


def stuck_request(port, path):
    """Sends PATH (which never returns) and waits for its worker to be
    killed, which ends the request."""
    t = threading.Thread(target=lambda: _ignore(lambda: get(port, path, timeout=30)), daemon=True)
    t.start()
    t.join(TIMEOUT + 15)
    assert not t.is_alive(), "the stuck request was never ended"


def _ignore(fn):
    try:
        fn()
    except OSError:
        pass


def kill_entry(journal, **match):
    want = [f"{k}={v}" for k, v in match.items()]
    entries = wait_for(lambda: journal.entries("APPSTACK_CAUSE=" + match.get("APPSTACK_CAUSE", "timeout"), *want),
                       timeout=15, what=f"the kill entry {want}")
    assert len(entries) == 1, [e["MESSAGE"] for e in entries]
    e = entries[0]
    for field in ("APPSTACK_WORKER", "APPSTACK_GENERATION", "APPSTACK_WORKER_PID"):
        assert e.get(field), (field, e)
    assert int(e["PRIORITY"]) <= 3
    assert f"(pid {e['APPSTACK_WORKER_PID']}) killed" in e["MESSAGE"]
    return e


def check_request_entry(journal, path):
    e = kill_entry(journal, HTTP_PATH=path)
    assert e["HTTP_METHOD"] == "GET"
    assert TIMEOUT * 1e6 <= int(e["HTTP_DURATION_USEC"]) < (TIMEOUT + 5) * 1e6, e["HTTP_DURATION_USEC"]
    assert f"request GET {path} ran for" in e["MESSAGE"]
    # One entry with the whole stack: no entry holds a frame line alone.
    frames = [x for x in journal.entries() if str(x.get("MESSAGE", "")).lstrip().startswith("File \"")]
    assert not frames, frames
    return e["MESSAGE"]


@needs_journald
def test_sleeping_request_entry_has_the_stack(journal_sup):
    journal, port, _ = journal_sup
    stuck_request(port, "/hang")
    msg = check_request_entry(journal, "/hang")
    assert f'File "{APP}", line {line_of("time.sleep(3600)")} in application' in msg, msg


@needs_journald
def test_python_loop_request_entry_has_the_stack(journal_sup):
    journal, port, _ = journal_sup
    stuck_request(port, "/spin")
    msg = check_request_entry(journal, "/spin")
    lines = {line_of("while True:"), line_of("while True:") + 1}
    assert any(f'File "{APP}", line {n} in application' in msg for n in lines), msg


@needs_journald
def test_request_holding_the_gil_in_c_entry(journal_sup):
    """The GIL is held by a C call: the dump is taken without it."""
    journal, port, _ = journal_sup
    stuck_request(port, "/c-hold")
    msg = check_request_entry(journal, "/c-hold")
    assert "in hold_gil_in_c" in msg and "in application" in msg, msg


@needs_journald
def test_stopped_worker_entry_says_why_there_is_no_stack(journal_sup):
    journal, port, supctl = journal_sup
    import json
    ready = wait_for(lambda: [w["pid"] for w in json.loads(supctl("status", "--json").stdout)["workers"]
                              if w["state"] == "idle"], timeout=20, what="a ready worker")
    victim = ready[0]
    os.kill(victim, signal.SIGSTOP)
    e = kill_entry(journal, APPSTACK_CAUSE="heartbeat", APPSTACK_WORKER_PID=victim)
    assert "its loop has not turned for" in e["MESSAGE"]
    assert "no Python stacks: the worker did not answer" in e["MESSAGE"]
    assert "T (stopped)" in e["MESSAGE"], e["MESSAGE"]
    assert "HTTP_PATH" not in e


# -- supctl dump ---------------------------------------------------------------

def busy_workers(s, n, path):
    """N workers each in a request for PATH, one request per worker."""
    threads = []
    for k in range(1, n + 1):
        t = threading.Thread(target=lambda: get(s.port, path, timeout=30), daemon=True)
        t.start()
        threads.append(t)
        wait_for(lambda: sum(w["state"] == "busy" for w in s.status()["workers"]) >= k, timeout=10,
                 what=f"{k} busy workers")
    return threads


def test_dump_shows_the_current_frame_of_each_busy_worker(supervisor):
    s = supervisor(workers=4, timeout=30)
    before = s.ready_pids()
    threads = busy_workers(s, 4, "/sleep?3")
    r = s.supctl("dump")
    assert r.returncode == 0, r
    sections = re.split(r"\n(?=worker \d+ \(pid)", r.stdout.strip())
    assert len(sections) == 4, r.stdout
    frame = f'File "{APP}", line {line_of("time.sleep(float(query")} in application'
    for sec in sections:
        assert re.match(r"worker \d+ \(pid \d+, generation 1, busy: GET /sleep for [0-9.]+ s\)", sec), sec
        assert frame in sec, sec
    for t in threads:
        t.join(30)
    # Nothing was stopped: the same workers, all their requests answered.
    assert s.ready_pids() == before
    assert s.status()["requests"] == 4
    assert "killed" not in s.log_text()


def test_dump_of_one_worker_and_of_an_unknown_one(supervisor):
    s = supervisor(workers=2, timeout=30)
    wid = s.status()["workers"][1]["id"]
    r = s.supctl("dump", str(wid))
    assert r.returncode == 0, r
    assert r.stdout.startswith(f"worker {wid} (pid ") and r.stdout.count("(pid ") == 1, r.stdout
    assert "(most recent call first)" in r.stdout
    r = s.supctl("dump", "99")
    assert r.returncode == 1 and "no worker 99" in r.stderr, r


def test_dump_of_a_loading_worker_shows_the_import(supervisor, tmpdir_short):
    """A worker still importing the app answers too (the import may be
    what hangs), and is not disturbed."""
    app_dir = copy_app(tmpdir_short)
    slow = os.path.join(app_dir, "slow_app.py")
    with open(slow, "w") as f:
        f.write("import time\ntime.sleep(2)\nfrom sup_app import application  # noqa\n")
    s = supervisor(workers=1, app_dir=app_dir, module="slow_app:application", wait=False)
    s.wait_control()
    wait_for(lambda: [w for w in s.status()["workers"] if w["state"] == "loading"], timeout=10,
             what="a loading worker")
    time.sleep(0.5)
    r = s.supctl("dump")
    assert r.returncode == 0, r
    assert "loading" in r.stdout and f'File "{slow}", line 2 in <module>' in r.stdout, r.stdout
    s.wait_ready(1, timeout=20)
    assert get(s.port)[0] == 200
    assert "failed worker start" not in s.log_text() and "killed" not in s.log_text()


def test_a_stopped_worker_does_not_hold_up_the_dump(supervisor):
    s = supervisor(workers=2, timeout=30)
    victim = s.ready_pids()[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = s.supctl("dump")
        took = time.monotonic() - t0
    finally:
        os.kill(victim, signal.SIGCONT)
    assert r.returncode == 0, r
    assert "no Python stacks: the worker did not answer within 0.5 s (process state T (stopped)" in r.stdout
    assert r.stdout.count("(most recent call first)") == 1, r.stdout
    assert took < 5, took
    # The late answer, once it runs again, is logged rather than lost.
    wait_for(lambda: "Python stacks, answered after the dump had timed out" in s.log_text(), timeout=10,
             what="the late dump in the log")
