"""Logging into a real systemd-journald (run standalone by systemdutil):
the structured fields of SPEC.md, one entry per traceback, the app's own
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
    workers = {e.get("APPSTACK_WORKER") for e in journal.entries() if e.get("APPSTACK_WORKER")}
    assert len(workers) >= 2, workers


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
