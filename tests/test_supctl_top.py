"""supctl top: a live view over the control socket. Under a real terminal
(tmux: send-keys, capture-pane) it shows the busy worker and its request,
refreshes, and quits on q; without one it prints plain frames."""
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import prog, wait_for
from supervisorutil import ENV, get, supervisor  # noqa: F401 (fixture)

needs_tmux = pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")


class Tmux:
    def __init__(self, d, command):
        self.sock = os.path.join(d, "tmux.sock")
        self.run("new-session", "-d", "-s", "top", "-x", "150", "-y", "30", command)

    def run(self, *args):
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True, timeout=10,
                              env=dict(ENV, TERM="xterm"))

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "top").stdout

    def alive(self):
        return self.run("has-session", "-t", "top").returncode == 0

    def kill(self):
        self.run("kill-server")


def slow_request(port, seconds):
    t = threading.Thread(target=lambda: get(port, f"/sleep?{seconds}", timeout=seconds + 10), daemon=True)
    t.start()
    return t


@needs_tmux
def test_top_in_a_terminal_shows_the_busy_worker_refreshes_and_quits_on_q(supervisor, tmpdir_short):
    s = supervisor(workers=2, timeout=30)
    t = slow_request(s.port, 6)
    wait_for(lambda: [w for w in s.status()["workers"] if w["state"] == "busy"], timeout=5, what="a busy worker")
    busy = next(w for w in s.status()["workers"] if w["state"] == "busy")
    tmux = Tmux(tmpdir_short, f"{prog('supctl')} -c {s.config} top -d 0.3")
    try:
        line = re.compile(rf"^\s*{busy['id']}\s+{busy['pid']}\s+1\s+busy\s.*\s(\d+\.\d)s\s+GET /sleep\b", re.M)
        first = wait_for(lambda: line.search(tmux.screen()), timeout=10, what="the busy worker on the screen")
        screen = tmux.screen()
        assert "(q quits)" in screen and "REQUEST" in screen
        assert re.search(r"^\s*\d+\s+\d+\s+1\s+idle\s", screen, re.M), screen     # the other worker
        # It refreshes: the request's age grows on the same screen.
        age = float(first.group(1))
        wait_for(lambda: (lambda m: m and float(m.group(1)) >= age + 0.5)(line.search(tmux.screen())), timeout=5,
                 what="the age to grow")
        assert re.search(r"\d+\.\d req/s", tmux.screen())
        tmux.run("send-keys", "-t", "top", "q")
        wait_for(lambda: not tmux.alive(), timeout=5, what="supctl top to quit on q")
    finally:
        tmux.kill()
    t.join()


def test_top_without_a_terminal_prints_one_plain_frame(supervisor):
    s = supervisor(workers=2, timeout=30)
    for _ in range(5):
        get(s.port, "/")
    t0 = time.monotonic()
    r = subprocess.run([prog("supctl"), "-c", s.config, "top", "-d", "0.5"], capture_output=True, text=True,
                       timeout=20, env=ENV)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 >= 0.5        # the rates span one delay
    assert "\x1b" not in r.stdout              # no terminal sequences in a pipe
    lines = r.stdout.splitlines()
    assert lines[0].startswith("appstackd ") and "generation 1, 2/2 workers ready" in lines[0], r.stdout
    assert "requests 5," in lines[1], r.stdout
    workers = [l for l in lines if re.match(r"^\s*\d+\s+\d+\s+1\s+idle\s", l)]
    assert len(workers) == 2, r.stdout
    # -n: that many frames, a blank line between them.
    r = subprocess.run([prog("supctl"), "-c", s.config, "top", "-d", "0.2", "-n", "2"], capture_output=True,
                       text=True, timeout=20, env=ENV)
    assert r.returncode == 0 and r.stdout.count("appstackd ") == 2, r.stdout


def test_top_errors(supervisor, tmpdir_short):
    r = subprocess.run([prog("supctl"), "-s", f"{tmpdir_short}/nothing.sock", "top"], capture_output=True, text=True,
                       timeout=10, env=ENV)
    assert r.returncode == 1 and "not running" in r.stderr, r.stderr
    r = subprocess.run([prog("supctl"), "-s", f"{tmpdir_short}/nothing.sock", "top", "-d", "zero"],
                       capture_output=True, text=True, timeout=10, env=ENV)
    assert r.returncode == 2 and "usage" in r.stderr.lower(), r.stderr
