"""log_format = json: outside the journal (a container's stderr) every
entry of appstackd, its workers, the app's output and the proxy's access
log is one JSON object per line with the fields the journal gets for the
same entry; the same requests against a real journald give the reference."""
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import APPS, free_port, prog, wait_for, write_config
from systemdutil import Journald, journald_usable

ENV = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS")}


def config(tmpdir, port, fmt, extra_app=""):
    return write_config(tmpdir, f"""
        [app]
        module = journal_app:application
        chdir = {APPS}
        {extra_app}

        [supervisor]
        listen = unix:{tmpdir}/app.sock
        workers = 1
        control = {tmpdir}/control.sock
        log_format = {fmt}

        [proxy]
        listen = 127.0.0.1:{port}
        upstream = unix:{tmpdir}/app.sock
        log_format = {fmt}

        [site other]
        server_name = other.example
        upstream = unix:{tmpdir}/app.sock
        """)


def get(url, host=None):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def traffic(base, marker):
    """The same entries in either run: a print, a warning, a traceback,
    bytes that are not UTF-8, and access entries for two sites."""
    assert get(f"{base}/print?{marker}") == 200
    assert get(f"{base}/log?{marker}") == 200
    assert get(f"{base}/raise?{marker}") == 500
    assert get(f"{base}/bytes?{marker}") == 200
    assert get(f"{base}/site?{marker}", host="other.example") == 200


def run_stack(argv_for, tmpdir, port, fmt, marker):
    cfg = config(tmpdir, port, fmt)
    procs = [argv_for("appstackd", [prog("appstackd"), "-c", cfg])]
    try:
        procs.append(argv_for("appstack-proxy", [prog("appstack-proxy"), "-c", cfg]))
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return get(base + "/") == 200
            except OSError:
                return False
        wait_for(up, timeout=30, what="the stack")
        traffic(base, marker)
        time.sleep(0.5)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
    return procs


def user_fields(entry):
    """The fields a program gives (journald adds the "_" ones and "__" ones)."""
    return {k for k in entry if not k.startswith("_")}


def kind(entry, marker):
    msg = entry.get("MESSAGE", "")
    if isinstance(msg, list):       # journalctl's form of a value that is not UTF-8
        msg = bytes(msg).decode("utf-8", "replace")
    if "HTTP_STATUS" in entry and marker in msg:
        return "access " + entry["HTTP_STATUS"] + " " + entry.get("APPSTACK_SITE", "")
    if "Traceback" in msg and marker in msg:
        return "traceback"
    if f"app-log {marker}" in msg:
        return "app-log"
    if f"app-print {marker}" in msg:
        return "app-print-bytes" if "\ufffd" in msg else "app-print"
    return None


def by_kind(entries, marker):
    out = {}
    for e in entries:
        k = kind(e, marker)
        if k:
            out.setdefault(k, e)
    return out


@pytest.mark.skipif(not journald_usable(), reason="needs root, unshare and systemd-journald")
def test_json_lines_have_the_journal_fields(tmpdir_short):
    marker = f"m{os.getpid()}x{time.monotonic_ns()}"
    # The reference: the journal.
    jdir = os.path.join(tmpdir_short, "j")
    os.makedirs(jdir)
    journal = Journald(jdir)
    try:
        run_stack(lambda ident, argv: subprocess.Popen(journal.command(ident, argv), stdin=subprocess.DEVNULL),
                  jdir, free_port(), "json", marker)   # the journal wins over log_format
        ref = by_kind(wait_for(lambda: (lambda e: e if len(by_kind(e, marker)) >= 7 else None)(journal.entries()),
                               timeout=10, what="journal entries"), marker)
    finally:
        journal.stop()
    # The same outside the journal, on stderr.
    sdir = os.path.join(tmpdir_short, "s")
    os.makedirs(sdir)
    logs = {}

    def spawn(ident, argv):
        logs[ident] = open(os.path.join(sdir, ident + ".log"), "wb")
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logs[ident], stderr=logs[ident], env=ENV)
    run_stack(spawn, sdir, free_port(), "json", marker)
    lines = []
    for ident, f in logs.items():
        f.close()
        with open(f.name, "rb") as r:
            raw = r.read()
        raw.decode("utf-8")             # every byte written is UTF-8
        for line in raw.splitlines():
            entry = json.loads(line)    # every line is one JSON object
            assert entry["SYSLOG_IDENTIFIER"] and entry["PRIORITY"].isdigit() and entry["MESSAGE"] is not None
            assert all(isinstance(v, str) for v in entry.values()), entry
            lines.append(entry)
    got = by_kind(lines, marker)
    assert set(got) == set(ref) == {"app-print", "app-print-bytes", "app-log", "traceback",
                                     "access 200 default", "access 500 default", "access 200 other"}, (got, ref)
    for k in ref:
        assert user_fields(got[k]) == user_fields(ref[k]), (k, got[k], ref[k])
        assert got[k]["PRIORITY"] == ref[k]["PRIORITY"], k
    # Values as the journal has them: one entry per traceback, worker tags.
    assert "\n" in got["traceback"]["MESSAGE"] and "ValueError" in got["traceback"]["MESSAGE"]
    assert got["app-print"]["APPSTACK_WORKER"] == "1"
    assert got["app-print"]["MESSAGE"] == f"app-print {marker}"
    assert got["app-print-bytes"]["MESSAGE"] == f"app-print {marker} \ufffd\ufffd"
    assert got["access 200 other"]["APPSTACK_SITE"] == "other"
    assert int(got["access 200 default"]["__REALTIME_TIMESTAMP"]) > 1e15


def test_text_stays_the_default(tmpdir_short):
    port = free_port()
    cfg = config(tmpdir_short, port, "text")
    with open(os.path.join(tmpdir_short, "p.log"), "wb") as log:
        p = subprocess.Popen([prog("appstack-proxy"), "-c", cfg], stdout=log, stderr=log, env=ENV)
        wait_for(lambda: b"listening" in open(log.name, "rb").read(), timeout=10, what="proxy")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    first = open(log.name).read().splitlines()[0]
    assert first.startswith(f"appstack-proxy[{p.pid}]: listening on")


@pytest.mark.parametrize("section,line", [("supervisor", 11), ("proxy", 16)])
def test_bad_log_format_is_a_config_error(tmpdir_short, section, line):
    cfg = config(tmpdir_short, free_port(), "json")
    text = open(cfg).read().splitlines()
    assert text[line - 1].strip() == "log_format = json" and section in "\n".join(text[:line])
    text[line - 1] = "log_format = xml"
    with open(cfg, "w") as f:
        f.write("\n".join(text) + "\n")
    for name in ("appstackd", "appstack-proxy"):
        r = subprocess.run([prog(name), "--check", "-c", cfg], capture_output=True, text=True, timeout=10)
        assert r.returncode == 1 and f"{cfg}:{line}: log_format: \"xml\" is not text or json" in r.stderr, r.stderr
