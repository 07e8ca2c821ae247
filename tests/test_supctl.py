"""supctl: status text and JSON, stop, usage errors, a stopped appstackd,
and a user who is neither root nor appstackd's user."""
import json
import os
import subprocess

from conftest import prog
from supervisorutil import ENV, get, supervisor  # noqa: F401


def supctl(*args, user=None):
    argv = [prog("supctl"), *args]
    if user:
        argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=ENV)


def test_status_text_and_json(supervisor):
    s = supervisor(workers=2)
    for _ in range(3):
        assert get(s.port)[0] == 200
    r = s.supctl("status")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"appstackd pid {s.proc.pid}, up ")
    assert "generation 1, 2 workers (target 2), 3 requests" in lines[0]
    pids = s.ready_pids()
    rows = [l.split() for l in lines if l.split() and l.split()[0].isdigit()]
    assert sorted(int(r[1]) for r in rows) == pids
    assert all(r[3] == "idle" for r in rows)
    st = json.loads(s.supctl("status", "--json").stdout)
    assert st["requests"] == 3 and st["generation"] == 1 and st["target"] == 2
    assert sum(w["requests"] for w in st["workers"]) == 3
    assert all(w["rss"] > 1 << 20 for w in st["workers"])
    assert [w["id"] for w in st["workers"]] == [1, 2]


def test_stop(supervisor):
    s = supervisor(workers=1)
    r = s.supctl("stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert s.proc.wait(timeout=10) == 0
    r = s.supctl("status")
    assert r.returncode == 1
    assert "appstackd is not running (no control socket at " in r.stderr


def test_not_running(tmpdir_short):
    path = os.path.join(tmpdir_short, "control.sock")
    for args in (("status",), ("reload",), ("scale", "3"), ("stop",)):
        r = supctl("-s", path, *args)
        assert r.returncode == 1
        assert r.stderr.strip() == f"appstackd is not running (no control socket at {path})"
    # A stale socket file nobody answers on.
    import socket
    with socket.socket(socket.AF_UNIX) as sk:
        sk.bind(path)
    r = supctl("-s", path, "status")
    assert r.returncode == 1 and "appstackd is not running" in r.stderr


def test_usage_errors(tmpdir_short):
    for args in ((), ("frobnicate",), ("scale",), ("status", "--yaml"), ("reload", "now")):
        r = supctl("-s", os.path.join(tmpdir_short, "x"), *args)
        assert r.returncode == 2, args
        assert "Usage:" in r.stderr


def test_other_uid_is_refused(supervisor, tmpdir_short):
    s = supervisor(workers=1)
    sock = os.path.join(tmpdir_short, "run", "control.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o600
    os.chmod(tmpdir_short, 0o755)
    # The file mode keeps others out...
    r = supctl("-s", sock, "status", user="nobody")
    assert r.returncode == 1 and "permission denied" in r.stderr, r
    # ...and SO_PEERCRED does even if someone loosens it.
    os.chmod(sock, 0o666)
    r = supctl("-s", sock, "stop", user="nobody")
    assert r.returncode == 1, r
    assert "permission denied: uid 65534 may not use" in r.stderr, r.stderr
    assert s.proc.poll() is None
    assert s.supctl("status").returncode == 0
    assert "refused uid 65534" in s.log_text()


def test_second_appstackd_does_not_steal_the_control_socket(supervisor, tmpdir_short, port):
    s = supervisor(workers=1)
    r = subprocess.run([prog("appstackd"), "-c", s.config], capture_output=True, text=True, timeout=20, env=ENV)
    assert r.returncode == 1
    assert "another appstackd is running" in r.stderr or "Address already in use" in r.stderr, r.stderr
    assert s.supctl("status").returncode == 0
