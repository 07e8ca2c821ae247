"""Scaling at run time: supctl scale N/+K/-K and TTIN/TTOU; scale-down
retires workers gracefully (their in-flight requests complete)."""
import signal
import threading

from supervisorutil import get, supervisor, wait_for  # noqa: F401


def test_scale_up_then_down_retires_gracefully(supervisor):
    s = supervisor(workers=2, timeout=10, graceful_timeout=20)
    r = s.supctl("scale", "5")
    assert r.returncode == 0 and "2 -> 5" in r.stdout, r
    s.wait_ready(5)
    # Slow requests until one of the workers about to be retired (the
    # newest: ids 3, 4, 5) is in the middle of one. One at a time, each once
    # the one before is seen busy: a worker that is serving accepts nothing,
    # so the next goes to an idle one (five at once could all be accepted by
    # workers 1 and 2 before any of them sent its request).
    results = []

    def slow():
        try:
            results.append(get(s.port, "/sleep?6", timeout=30)[0])
        except OSError as e:
            results.append(e)

    def busy_ids():
        return {w["id"] for w in s.status()["workers"] if w["state"] == "busy"}
    threads = []
    while not busy_ids() & {3, 4, 5}:
        assert len(threads) < 5, s.status()
        threads.append(threading.Thread(target=slow))
        threads[-1].start()
        wait_for(lambda: len(busy_ids()) >= len(threads), timeout=20, what=f"{len(threads)} busy workers")
    r = s.supctl("scale", "2")
    assert r.returncode == 0 and "5 -> 2" in r.stdout, r
    # The newest go; an idle one may be gone already, busy ones finish first.
    states = {w["id"]: w["state"] for w in s.status()["workers"]}
    assert states[1] != "stopping" and states[2] != "stopping", states
    assert all(states[i] == "stopping" for i in (3, 4, 5) if i in states), states
    assert any(states.get(i) == "stopping" for i in (3, 4, 5)), states
    for t in threads:
        t.join(30)
    assert results == [200] * len(threads), s.log_text()
    s.wait_ready(2)
    assert sorted(w["id"] for w in s.status()["workers"]) == [1, 2]
    assert s.status()["target"] == 2


def test_scale_relative_and_signals(supervisor):
    s = supervisor(workers=2)
    assert s.supctl("scale", "+2").returncode == 0
    s.wait_ready(4)
    assert s.supctl("scale", "-1").returncode == 0
    s.wait_ready(3)
    s.proc.send_signal(signal.SIGTTIN)
    s.wait_ready(4)
    s.proc.send_signal(signal.SIGTTOU)
    s.wait_ready(3)     # one at a time: two pending signals of a kind merge into one
    s.proc.send_signal(signal.SIGTTOU)
    s.wait_ready(2)
    assert get(s.port)[0] == 200


def test_scale_rejects_bad_counts(supervisor):
    s = supervisor(workers=2)
    for arg in ("0", "-2", "lots", "+1000", "1.5"):
        r = s.supctl("scale", arg)
        assert r.returncode == 1, (arg, r)
        assert "scale" in r.stderr, r.stderr
    assert s.status()["target"] == 2
    assert len(s.ready_pids()) == 2
