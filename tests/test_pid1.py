"""appstackd and appstack-proxy as PID 1 of a PID namespace, as in a
container without systemd: every orphan of the namespace becomes their
child and is reaped, and TERM (which a PID 1 only gets through a handler)
is a graceful stop."""
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import APPS, free_port, prog, wait_for, write_config
from supervisorutil import ENV

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                                reason="needs root, unshare and nsenter")

ORPHANS = 5


def as_pid1(argv, log):
    """ARGV as PID 1 of a new PID namespace (and /proc of its own); returns
    the unshare process and the pid of ARGV's process as seen from here."""
    p = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=ENV)
    child = wait_for(lambda: (subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True)
                              .stdout.split() or [None])[0], timeout=10, what="the namespace's PID 1")
    return p, int(child)


def zombies_in(pid1):
    """States of every process of PID1's namespace but PID 1 itself."""
    r = subprocess.run(["nsenter", "-t", str(pid1), "-p", "-m", "--", "ps", "-e", "-o", "pid=,stat=,comm="],
                       capture_output=True, text=True, timeout=10)
    return [line for line in r.stdout.splitlines() if line.split()[1].startswith("Z")]


def make_orphans(pid1):
    """Processes whose parent exits at once: the namespace's PID 1 inherits
    them (as a container's init inherits what "podman exec" leaves)."""
    subprocess.run(["nsenter", "-t", str(pid1), "-p", "-m", "--", "sh", "-c",
                    " ".join(["(sleep 0.2 &);"] * ORPHANS) + " exit 0"], check=True, timeout=10)


def test_proxy_as_pid1_reaps_orphans_and_stops_on_term(tmpdir_short):
    port = free_port()
    cfg = write_config(tmpdir_short, f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{port}\nupstream = 127.0.0.1:1\n")
    with open(os.path.join(tmpdir_short, "proxy.log"), "wb") as log:
        ns, pid1 = as_pid1([prog("appstack-proxy"), "-c", cfg], log)
        try:
            def up():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False
            wait_for(up, timeout=10, what="the proxy")
            make_orphans(pid1)
            time.sleep(1)
            assert zombies_in(pid1) == []
            os.kill(pid1, signal.SIGTERM)
            assert ns.wait(timeout=10) == 0
        finally:
            if ns.poll() is None:
                ns.kill()
                ns.wait()
    assert "stopped after" in open(log.name).read()


def test_appstackd_as_pid1_reaps_orphans_and_stops_on_term(tmpdir_short):
    port = free_port()
    cfg = write_config(tmpdir_short, f"""
        [app]
        module = sup_app:application
        chdir = {APPS}

        [supervisor]
        listen = 127.0.0.1:{port}
        workers = 2
        control = {tmpdir_short}/control.sock
        """)
    with open(os.path.join(tmpdir_short, "sup.log"), "wb") as log:
        ns, pid1 = as_pid1([prog("appstackd"), "-c", cfg], log)
        try:
            def up():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    return False
            wait_for(up, timeout=30, what="the workers")
            make_orphans(pid1)
            time.sleep(1)
            assert zombies_in(pid1) == []
            os.kill(pid1, signal.SIGTERM)
            assert ns.wait(timeout=30) == 0
        finally:
            if ns.poll() is None:
                ns.kill()
                ns.wait()
    text = open(log.name).read()
    assert "graceful stop" in text, text
