"""Logging into a real systemd-journald (run standalone by systemdutil):
the structured fields of appstack(7), one entry per traceback, the app's own
stdout/stderr tagged with its worker, and a stalled journal that must not
stall the workers. Under a booted systemd the same is checked by
tests/e2e/run with journalctl -u."""
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import APPS, free_port, prog, wait_for, write_config
from systemdutil import Journald, journald_usable

pytestmark = pytest.mark.skipif(not journald_usable(),
                                reason="needs root, unshare and systemd-journald")


@pytest.fixture
def journal(tmpdir_short):
    j = Journald(tmpdir_short)
    try:
        yield j
    finally:
        try:
            j.resume()
        except ProcessLookupError:
            pass
        j.stop()


def start(journal, ident, argv):
    return subprocess.Popen(journal.command(ident, argv), stdin=subprocess.DEVNULL)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def stack(journal, tmpdir_short):
    """appstackd (2 workers of journal_app) and appstack-proxy, both on the
    journal the way systemd would run them."""
    port = free_port()
    cfg = write_config(tmpdir_short, f"""
        [app]
        module = journal_app:application
        chdir = {APPS}

        [supervisor]
        listen = unix:{tmpdir_short}/app.sock
        workers = 2
        control = {tmpdir_short}/control.sock

        [proxy]
        workers = 1
        listen = 127.0.0.1:{port}
        upstream = unix:{tmpdir_short}/app.sock
        access_log = on
        """)
    procs = [start(journal, "appstackd", [prog("appstackd"), "-c", cfg])]
    try:
        procs.append(start(journal, "appstack-proxy", [prog("appstack-proxy"), "-c", cfg]))
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return get(base + "/")[0] == 200
            except OSError:
                return False
        wait_for(up, timeout=30, what="the stack to answer")
        yield base
    finally:
        for p in reversed(procs):
            stop(p)


def get_when_up(url):
    def attempt():
        try:
            return get(url)
        except OSError:
            return None
    return wait_for(attempt, timeout=20, what=url)


def entries_with(journal, *matches, min_count=1, timeout=10):
    return wait_for(lambda: (lambda e: e if len(e) >= min_count else None)(journal.entries(*matches)),
                    timeout=timeout, what=f"journal entries {matches}")


def test_worker_messages_carry_worker_and_generation(journal, stack):
    for _ in range(6):
        get(stack + "/print?x")
    entries = entries_with(journal, "APPSTACK_WORKER=1")
    assert all(e.get("APPSTACK_GENERATION") for e in entries)
    # Native protocol: the fields are the program's, not parsed from text.
    assert any(e["_TRANSPORT"] == "journal" for e in entries)
    # Both workers log (at least appstackd's "ready" line for each, which
    # may come after the first answer).
    wait_for(lambda: len({e.get("APPSTACK_WORKER") for e in journal.entries() if e.get("APPSTACK_WORKER")}) >= 2,
             what="entries of both workers")


def test_app_print_is_tagged_with_its_worker(journal, stack):
    marker = f"p{os.getpid()}{time.monotonic_ns()}"
    get(stack + "/print?" + marker)
    entries = entries_with(journal, "MESSAGE=app-print " + marker)
    assert len(entries) == 1, entries
    e = entries[0]
    assert e.get("APPSTACK_WORKER") and e.get("APPSTACK_GENERATION"), e
    assert e["PRIORITY"] == "6"


def test_app_stderr_logging_has_warning_priority(journal, stack):
    marker = f"l{os.getpid()}{time.monotonic_ns()}"
    get(stack + "/log?" + marker)
    entries = entries_with(journal, "MESSAGE=app-log " + marker)
    assert len(entries) == 1, entries
    assert entries[0].get("APPSTACK_WORKER"), entries[0]
    assert int(entries[0]["PRIORITY"]) <= 4, entries[0]


def test_traceback_is_one_entry(journal, stack):
    marker = f"t{os.getpid()}{time.monotonic_ns()}"
    status, body = get(stack + "/raise?" + marker)
    assert status == 500
    assert marker.encode() not in body  # never to the client
    hits = wait_for(lambda: [e for e in journal.entries()
                             if marker in str(e.get("MESSAGE", ""))], what="the traceback")
    time.sleep(0.5)
    hits = [e for e in journal.entries() if marker in str(e.get("MESSAGE", ""))]
    tb = [e for e in hits if "Traceback" in e["MESSAGE"]]
    assert len(tb) == 1, [e["MESSAGE"] for e in hits]
    msg = tb[0]["MESSAGE"]
    assert "ValueError: journal-test-boom " + marker in msg
    assert msg.count("\n") >= 3
    assert tb[0].get("APPSTACK_WORKER"), tb[0]
    assert int(tb[0]["PRIORITY"]) <= 3
    # And no stray per-line entries of the same traceback.
    assert not [e for e in journal.entries() if str(e.get("MESSAGE", "")).startswith('  File "')
                and "journal_app.py" in e["MESSAGE"] and e is not tb[0] and "Traceback" not in e["MESSAGE"]]


def test_proxy_access_log_fields(journal, stack):
    path = f"/missing-{os.getpid()}-{time.monotonic_ns()}"
    status, _ = get(stack + path)  # journal_app answers 200 to anything
    entries = entries_with(journal, "HTTP_PATH=" + path)
    e = entries[0]
    assert e["HTTP_METHOD"] == "GET"
    assert e["HTTP_STATUS"] == str(status)
    assert int(e["HTTP_DURATION_USEC"]) >= 0
    assert e["APPSTACK_UPSTREAM"].startswith("unix:"), e["APPSTACK_UPSTREAM"]
    assert e["APPSTACK_SITE"] == "default"
    assert any(x["HTTP_PATH"] == path for x in journal.entries(f"HTTP_STATUS={status}"))


def test_stalled_journal_does_not_stall_workers(journal, stack):
    """journald stopped: the app's output must not block its worker."""
    get(stack + "/print?warm")
    journal.pause()
    try:
        t0 = time.monotonic()
        for i in range(4):
            status, _ = get(stack + f"/flood?s{i}-1000", timeout=20)
            assert status == 200
        elapsed = time.monotonic() - t0
    finally:
        journal.resume()
    assert elapsed < 20, f"4 requests took {elapsed:.1f}s with the journal stopped"
    # Once the journal reads again, the output that waited arrives, in
    # order, and so does new output.
    marker = f"after{os.getpid()}{time.monotonic_ns()}"
    get(stack + "/print?" + marker)
    entries_with(journal, "MESSAGE=app-print " + marker, timeout=20)

    def flooded():
        lines = [e["MESSAGE"].split()[2] for e in journal.entries()
                 if str(e.get("MESSAGE", "")).startswith("flood s")]
        return lines if len(lines) >= 4000 else None
    lines = wait_for(flooded, timeout=30, what="all 4000 lines written while the journal was stopped")
    assert len(lines) == 4000


@pytest.fixture
def stdio_stack(journal, tmpdir_short):
    """appstackd alone (1 worker of stdio_app), stderr_level = notice."""
    port = free_port()
    cfg = write_config(tmpdir_short, f"""
        [app]
        module = stdio_app:application
        chdir = {APPS}
        stderr_level = notice

        [supervisor]
        listen = 127.0.0.1:{port}
        workers = 1
        control = {tmpdir_short}/control.sock
        """)
    proc = start(journal, "appstackd", [prog("appstackd"), "-c", cfg])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_worker_stdio_is_real_and_logged_with_priorities(journal, stdio_stack):
    """Real stdio streams, whatever writes to fds 1 and 2 (Python, C, a
    subprocess) lands in the journal tagged with its worker; stdout at
    info, stderr at stderr_level, logging records at their own level."""
    marker = f"s{os.getpid()}x{time.monotonic_ns()}"
    status, body = get_when_up(stdio_stack + "/?" + marker)
    import json
    info = json.loads(body)
    # (.buffer is a FileIO when PYTHONUNBUFFERED is set, as in any Python.)
    assert info.pop("buffer") in ("BufferedWriter", "FileIO")
    assert info == {"isatty": False, "fileno": [1, 2], "type": "TextIOWrapper",
                    "line_buffering": True, "errors_is_stderr": True}
    expected = {
        "print": 6, "buffer": 6, "subout": 6, "subexplicit": 6,
        "stderr": 5, "cwrite": 5, "suberr": 5,
        "logdebug": 7, "loginfo": 6, "logwarning": 4, "logerror": 3, "logcritical": 2, "prefixed": 3,
    }

    def found():
        got = {}
        for e in journal.entries("SYSLOG_IDENTIFIER=appstack-worker"):
            msg = str(e.get("MESSAGE", ""))
            for word in expected:
                if msg.startswith(f"{word} {marker}"):
                    got.setdefault(word, []).append(e)
        return got if len(got) == len(expected) else None
    got = wait_for(found, timeout=15, what="every kind of output in the journal")
    for word, prio in expected.items():
        assert len(got[word]) == 1, (word, got[word])
        e = got[word][0]
        assert int(e["PRIORITY"]) == prio, (word, e["PRIORITY"], e["MESSAGE"])
        assert e["APPSTACK_WORKER"] == "1" and e["APPSTACK_GENERATION"] == "1", e
        assert e["SYSLOG_PID"] != e.get("_PID")     # the worker's pid, relayed by appstackd
    assert got["logerror"][0]["MESSAGE"] == f"logerror {marker}\nsecond line"
    assert got["prefixed"][0]["MESSAGE"] == f"prefixed {marker}"    # "<3>" is the priority, not text


def test_piecewise_tracebacks_are_one_entry(journal, stdio_stack):
    """traceback.print_exc() (a chained exception), faulthandler and an
    uncaught exception in a thread write a traceback piece by piece: each
    is still one entry."""
    marker = f"t{os.getpid()}x{time.monotonic_ns()}"
    assert get_when_up(stdio_stack + "/?" + marker)[0] == 200

    def entries():
        tb = [e for e in journal.entries("SYSLOG_IDENTIFIER=appstack-worker") if marker in str(e.get("MESSAGE"))
              and "Traceback" in str(e.get("MESSAGE"))]
        return tb if len(tb) >= 2 else None
    wait_for(entries, timeout=15, what="two tracebacks")
    time.sleep(1)   # nothing more may come
    tb = [e for e in journal.entries("SYSLOG_IDENTIFIER=appstack-worker") if "stdio_app.py" in str(e.get("MESSAGE"))
          and marker in str(e.get("MESSAGE"))]
    printed = [e["MESSAGE"] for e in tb if f"ValueError: printed {marker}" in e["MESSAGE"]]
    assert len(printed) == 1, [e["MESSAGE"] for e in tb]
    assert printed[0].startswith("Traceback (most recent call last):")
    assert f"KeyError: 'inner {marker}'" in printed[0]
    assert "During handling of the above exception, another exception occurred:" in printed[0]
    thread = [e["MESSAGE"] for e in tb if f"thread-{marker}" in e["MESSAGE"]]
    assert len(thread) == 1 and "ZeroDivisionError" in thread[0], thread
    # faulthandler names no marker: its dump is the entry with the app's frame.
    dumps = [e for e in journal.entries("SYSLOG_IDENTIFIER=appstack-worker")
             if str(e.get("MESSAGE", "")).startswith("Stack (most recent call first):")]
    assert dumps and all('File "' in e["MESSAGE"] and "stdio_app.py" in e["MESSAGE"] for e in dumps), dumps
    assert not [e for e in journal.entries("SYSLOG_IDENTIFIER=appstack-worker")
                if str(e.get("MESSAGE", "")).lstrip().startswith('File "')]
