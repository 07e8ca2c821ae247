"""Helpers for the appstackd/supctl tests: start a real appstackd on a private
config, ask supctl about it, make HTTP requests to its workers."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import APPS, prog, wait_for, write_config

ENV = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
# `supctl status` states of a worker that serves ("recycling": at its
# max_requests, serving until its replacement is ready).
SERVING = ("idle", "busy", "recycling")
ENV.pop("NOTIFY_SOCKET", None)
ENV.pop("LISTEN_FDS", None)


def sup_config(tmpdir, port, app_dir=None, module="sup_app:application", workers=2, timeout=2,
               graceful_timeout=5, extra="", app_extra=""):
    """An appstack.ini for appstackd on 127.0.0.1:PORT; EXTRA is appended
    to [supervisor], APP_EXTRA to [app]. Returns its path."""
    return write_config(tmpdir, f"""\
        [app]
        module = {module}
        chdir = {app_dir or APPS}
""" + "".join(f"        {line}\n" for line in app_extra.splitlines()) + f"""\

        [supervisor]
        listen = 127.0.0.1:{port}
        workers = {workers}
        timeout = {timeout}
        graceful_timeout = {graceful_timeout}
        control = {tmpdir}/run/control.sock\n""" + "".join(f"        {line}\n" for line in extra.splitlines()))


def copy_app(tmpdir, name="sup_app.py"):
    """A private copy of tests/apps/NAME that a test may rewrite."""
    app_dir = os.path.join(tmpdir, "app")
    os.makedirs(app_dir, exist_ok=True)
    shutil.copy(os.path.join(APPS, name), app_dir)
    return app_dir


class Supervisor:
    """A running appstackd; stderr (its log) goes to a file."""

    def __init__(self, config, port, env=None, argv_prefix=(), pass_fds=()):
        self.config = config
        self.port = port
        self.logpath = os.path.join(os.path.dirname(config), "appstackd.log")
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen([*argv_prefix, prog("appstackd"), "-c", config],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env or ENV, pass_fds=pass_fds)

    def supctl(self, *args, timeout=60):
        return subprocess.run([prog("supctl"), "-c", self.config, *args], capture_output=True, text=True,
                              timeout=timeout, env=ENV)

    def status(self):
        r = self.supctl("status", "--json")
        assert r.returncode == 0, f"supctl status failed: {r.stderr}\n{self.log_text()}"
        return json.loads(r.stdout)

    def workers(self, state=None):
        """Workers of the serving generation (all states unless STATE)."""
        st = self.status()
        return [w for w in st["workers"]
                if w["generation"] == st["generation"] and (state is None or w["state"] == state)]

    def wait_control(self, timeout=10):
        """Waits until appstackd answers on its control socket."""
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"appstackd exited with {self.proc.returncode}:\n{self.log_text()}")
            return self.supctl("status").returncode == 0
        wait_for(up, timeout=timeout, what="the control socket")

    def ready_pids(self):
        return sorted(w["pid"] for w in self.status()["workers"] if w["state"] in SERVING)

    def wait_ready(self, n, timeout=20):
        """Waits until exactly N workers serve and no other worker is left."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"appstackd exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                st = self.status()
            except AssertionError:
                return None
            ws = st["workers"]
            return len(ws) == n and all(w["state"] in SERVING for w in ws) and ws
        return wait_for(ready, timeout=timeout, what=f"{n} ready workers")

    def log_text(self):
        self.log.flush()
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self):
        """Stops appstackd; fails if it did not exit cleanly or if the
        sanitizers (in an --enable-sanitizers build) reported on the master."""
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)   # fast: tests must not wait for hung views
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"appstackd did not stop on SIGINT:\n{self.log_text()}")
            assert self.proc.returncode == 0, f"appstackd exited with {self.proc.returncode}:\n{self.log_text()}"
        text = self.log_text()
        self.log.close()
        bad = [line for line in text.splitlines()
               if f"=={self.proc.pid}==" in line or ("runtime error:" in line and "supervisor/" in line)]
        assert not bad, "sanitizer reports from appstackd:\n" + text


def get(port, path="/", timeout=10):
    """(status, body) of one request on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists": look at its state.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def no_zombies_of(pid):
    """True when PID has no zombie children."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            return False
    return True


def wait_gone(pids, timeout=10):
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=timeout, what=f"pids {pids} to exit")


def wait_http(port, timeout=20):
    def ok():
        try:
            return get(port, timeout=2)[0] == 200
        except OSError:
            return False
    wait_for(ok, timeout=timeout, what=f"HTTP 200 on port {port}")


def now():
    return time.monotonic()


@pytest.fixture
def supervisor(tmpdir_short, port):
    """start(**sup_config kwargs) -> a running Supervisor, stopped at teardown."""
    started = []

    def start(config=None, wait=True, env=None, argv_prefix=(), **kw):
        config = config or sup_config(tmpdir_short, port, **kw)
        s = Supervisor(config, port, env=env, argv_prefix=argv_prefix)
        started.append(s)
        if wait:
            s.wait_ready(kw.get("workers", 2))
        return s

    try:
        yield start
    finally:
        for s in started:
            s.stop()
