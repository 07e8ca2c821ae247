"""Helpers for the operations tests (tests/test_ops_*.py): the whole stack,
appstack-proxy in front of appstackd, on listening sockets the test holds
and hands over with LISTEN_FDS the way systemd's .socket units do (so that
either program can be restarted), and a load that counts every failure.

The socket holder and the load client are the chaos script's own
(bench/chaoslib): the make-check versions run the same code, shorter."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import APPS, SRCDIR, free_port, prog, wait_for

sys.path.insert(0, os.path.join(SRCDIR, "bench"))
from chaoslib.held import HeldProc, HeldSocket  # noqa: E402
from chaoslib.load import Probe  # noqa: E402

ENV = {k: v for k, v in os.environ.items()
       if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM",
                    "PYTHONPATH", "PYTHONHOME")}
ENV["PYTHONDONTWRITEBYTECODE"] = "1"
# Worker states that serve ("recycling": at max_requests, until its replacement is ready).
SERVING = ("idle", "busy", "recycling")

# The ways appstackd can run the same app, as (section, key, value) lines:
# the operations tests run in each ([app] preload forks workers from a
# template; [supervisor] threads serves several requests per worker).
MODES = {
    "plain": [],
    "preload": [("app", "preload", "on")],
    "threads": [("supervisor", "threads", "4")],
}


def mode_kw(mode, **kw):
    """Stack kwargs for MODE, its config lines added to those of KW."""
    out = dict(kw)
    for section, key, value in MODES[mode]:
        arg = {"app": "app_extra", "supervisor": "supervisor_extra"}[section]
        out[arg] = (out.get(arg, "") + f"\n{key} = {value}").strip()
    return out


def mode_options(mode):
    """MODE as bench/chaos options."""
    return [f"--appstack-option={section}.{key}={value}" for section, key, value in MODES[mode]]


class Stack:
    """appstackd + appstack-proxy on held sockets, in directory D."""

    def __init__(self, d, module="hello:application", chdir=APPS, workers=2, supervisor_extra="",
                 app_extra="", env=None, timeout=30):
        self.dir, self.workers = d, workers
        self.port = free_port()
        self.env = dict(ENV, **(env or {}))
        self.ini = os.path.join(d, "appstack.ini")
        with open(self.ini, "w") as f:
            f.write(f"[app]\nmodule = {module}\nchdir = {chdir}\n{app_extra}\n"
                    f"[supervisor]\nlisten = unix:{d}/app.sock\nworkers = {workers}\n"
                    f"timeout = {timeout}\ngraceful_timeout = 10\ncontrol = {d}/control.sock\n"
                    f"{supervisor_extra}\n"
                    f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{self.port}\nupstream = unix:{d}/app.sock\n")
        self.app_sock = HeldSocket(f"unix:{d}/app.sock", "app")
        self.http_sock = HeldSocket(f"127.0.0.1:{self.port}", "http")
        self.master = self.proxy = None
        self.logs = []

    def _start(self, name, sock):
        n = sum(1 for p in self.logs if os.path.basename(p).startswith(name))
        log = os.path.join(self.dir, f"{name}.{n}.log")
        self.logs.append(log)
        return HeldProc(name, [prog(name), "-c", self.ini], log, [sock], env=self.env)

    def start(self, wait=True):
        self.master = self._start("appstackd", self.app_sock)
        self.proxy = self._start("appstack-proxy", self.http_sock)
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout=30):
        def up():
            for p in (self.master, self.proxy):
                if not p.alive():
                    raise AssertionError(f"{p.name} exited ({p.popen.returncode}):\n{self.log_text()}")
            st = self.status()
            return st and sum(w["state"] in SERVING for w in st["workers"]) >= self.workers
        wait_for(up, timeout=timeout, what="the workers to serve")
        wait_for(lambda: get_status(self.port) == 200, timeout=timeout, what="200 through the proxy")

    def supctl(self, *args, timeout=60):
        return subprocess.run([prog("supctl"), "-c", self.ini, *args], capture_output=True, text=True,
                              timeout=timeout, env=ENV)

    def status(self):
        r = self.supctl("status", "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def serving_pids(self):
        st = self.status() or {"workers": []}
        return [w["pid"] for w in st["workers"] if w["state"] in SERVING]

    def restart_proxy(self):
        self.proxy.stop(timeout=15)
        self.proxy = self._start("appstack-proxy", self.http_sock)

    def restart_master(self):
        self.master.stop(timeout=20)
        self.master = self._start("appstackd", self.app_sock)

    def log_text(self, tail=6000):
        out = []
        for path in self.logs:
            try:
                with open(path, errors="replace") as f:
                    out.append(f"--- {os.path.basename(path)}\n{f.read()[-tail:]}")
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        for p in (self.proxy, self.master):
            if p is not None:
                p.stop(timeout=15)
        self.app_sock.close()
        self.http_sock.close()


def get_status(port, path="/", method="GET", timeout=5):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return 0
    finally:
        c.close()


@pytest.fixture
def ops_stack(tmpdir_short):
    """start(**Stack kwargs) -> a serving Stack, stopped at teardown."""
    started = []

    def start(wait=True, **kw):
        s = Stack(tmpdir_short, **kw)
        started.append(s)
        return s.start(wait=wait)

    try:
        yield start
    finally:
        for s in started:
            s.stop()


def under_load(stack, seconds, every, event, conns=4, paths=("/",), methods=("GET", "HEAD")):
    """Runs EVENT(n) every EVERY s for SECONDS while CONNS keep-alive
    connections cycle through METHODS via the proxy. Returns the probe's
    result and the number of events."""
    probe = Probe("127.0.0.1", stack.port, paths=paths, conns=conns, timeout=15, methods=methods)
    t0 = time.monotonic()
    n = 0
    try:
        while True:
            due = t0 + (n + 1) * every
            if due > t0 + seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            event(n)
            n += 1
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
    finally:
        res = probe.stop()
    return res, n


def assert_no_failures(res, stack, min_requests=100):
    detail = (f"{res['requests']} requests, statuses {res['by_status']}, socket errors {res['errors']}; "
              f"first failures (s, method, path, what): {res['failures'][:8]}")
    assert res["non2xx"] == 0 and res["sock_errors"] == 0, detail + "\n" + stack.log_text(3000)
    assert res["requests"] >= min_requests, "too little load to mean anything: " + detail
    return detail


def kill_random(pids):
    pid = random.choice(pids)
    os.kill(pid, signal.SIGKILL)
    return pid



@pytest.fixture(scope="module")
def django_site():
    """The example Django site (examples/mysite) with its static files
    collected and its database migrated in a private directory: kwargs for
    Stack (module, chdir, app_extra)."""
    import tempfile
    from benchlib import apps
    with tempfile.TemporaryDirectory(prefix="as-dj-", dir="/tmp") as d:
        app = apps.django(d, log=lambda msg: None)
        env = "".join(f"env = {k}={v}\n" for k, v in sorted(app.env.items()))
        yield {"module": app.module, "chdir": app.chdir, "app_extra": env}
