"""The worker's getrandom() (worker/vgetrandom.c): on a kernel whose vDSO
has __vdso_getrandom, an app's os.urandom() and secrets calls make no
syscall; the bytes stay unpredictable across forks (preload) and threads."""
import ctypes
import json
import os
import signal
import subprocess
import threading

import pytest

from conftest import wait_for
from supervisorutil import get, sup_config, supervisor  # noqa: F401


def vdso_has_getrandom():
    try:
        vdso = ctypes.CDLL("linux-vdso.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        vdso.__vdso_getrandom  # noqa: B018 (the lookup is the test)
        return True
    except (OSError, AttributeError):
        return False


def info(port, path):
    status, body = get(port, path, timeout=20)
    assert status == 200, body
    return json.loads(body)


def keep_busy(port):
    """A long request in the background, so the next one goes to another worker."""
    def run():
        try:
            get(port, "/many?n=100000", timeout=20)
        except OSError:
            pass        # the test is over and appstackd gone
    threading.Thread(target=run, daemon=True).start()


def start(supervisor, tmpdir, port, workers=1, app_extra="", extra=""):
    cfg = sup_config(tmpdir, port, module="random_app:application", workers=workers,
                     app_extra=app_extra, extra=extra, timeout=20)
    return supervisor(config=cfg, workers=workers)


def getrandom_syscalls(pid, port, path):
    """(answer, getrandom(2) calls the worker PID made while serving PATH)."""
    out = f"/tmp/strace-getrandom-{pid}.out"
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=getrandom", "-o", out, "-p", str(pid)])
    try:
        # strace prints nothing once attached: wait for its ptrace stop to show.
        wait_for(lambda: open(f"/proc/{pid}/status").read().count("TracerPid:\t0") == 0,
                 what="strace attached")
        got = info(port, path)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(10)
    with open(out) as f:
        calls = [line for line in f if "getrandom(" in line]
    os.unlink(out)
    return got, calls


@pytest.mark.skipif(not vdso_has_getrandom(), reason="this kernel's vDSO has no getrandom (Linux < 6.11)")
@pytest.mark.parametrize("extra", ["", "threads = 4"], ids=["single", "threads"])
def test_urandom_makes_no_syscall(supervisor, tmpdir_short, port, extra):
    s = start(supervisor, tmpdir_short, port, extra=extra)
    info(port, "/")      # the thread that serves has its state now
    pid = s.ready_pids()[0]
    got, calls = getrandom_syscalls(pid, port, "/many?n=500")
    assert len(got["bytes"]) == 1000 and len(got["token"]) >= 43
    # 500 one-byte reads and a token: through the vDSO, not one syscall each.
    assert len(calls) < 5, calls[:10]


def test_bytes_differ_between_forked_workers(supervisor, tmpdir_short, port):
    """The template draws from its own state before it forks (Python's hash
    seed); each worker's state is wiped by the fork, so no two workers, nor
    a worker forked later, repeat each other's bytes."""
    s = start(supervisor, tmpdir_short, port, workers=3, app_extra="preload = on")
    firsts = {}
    for _ in range(200):
        firsts.update({(i := info(port, "/"))["pid"]: i["first"]})
        if len(firsts) == 3:
            break
        keep_busy(port)
    assert len(firsts) == 3 and len(set(firsts.values())) == 3, firsts
    victim = next(iter(firsts))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(s.ready_pids()) == 3 and victim not in s.ready_pids(), timeout=20, what="the respawn")
    new = next(p for p in s.ready_pids() if p not in firsts)
    for _ in range(200):
        i = info(port, "/")
        if i["pid"] == new:
            assert i["first"] not in firsts.values()
            break
        keep_busy(port)
    else:
        pytest.fail("the respawned worker never answered")


def test_threads_each_draw_their_own_bytes(supervisor, tmpdir_short, port):
    """More short-lived threads than the worker keeps states for (256): a
    thread that ends hands its state on, and every draw is distinct."""
    start(supervisor, tmpdir_short, port, extra="threads = 2")
    got = info(port, "/threads?n=600&at_once=8")["draws"]
    assert len(got) == 2400 and len(set(got)) == 2400


@pytest.mark.parametrize("extra", ["", "threads = 2"], ids=["single", "threads"])
def test_a_fork_by_the_app_does_not_repeat_the_parents_bytes(supervisor, tmpdir_short, port, extra):
    start(supervisor, tmpdir_short, port, extra=extra)
    info(port, "/")     # the serving thread has drawn from its state before the fork
    for _ in range(3):
        got = info(port, "/fork")
        assert len(got["parent"]) == len(got["child"]) == 128
        assert got["parent"] != got["child"], got
