"""Scaling at run time: supctl scale N/+K/-K and TTIN/TTOU; scale-down
retires workers gracefully (their in-flight requests complete)."""
import signal
import threading

from supervisorutil import get, supervisor, wait_for  # noqa: F401


def test_scale_up_then_down_retires_gracefully(supervisor):
    s = supervisor(workers=2)
    r = s.supctl("scale", "5")
    assert r.returncode == 0 and "2 -> 5" in r.stdout, r
    s.wait_ready(5)
    # One slow request per worker: busy workers do not accept, so five
    # concurrent requests land on five workers, three of which are retired.
    results = []

    def slow():
        try:
            results.append(get(s.port, "/sleep?3", timeout=30)[0])
        except OSError as e:
            results.append(e)
    threads = [threading.Thread(target=slow) for _ in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(w["state"] == "busy" for w in s.status()["workers"]) == 5, timeout=20,
             what="5 busy workers")
    r = s.supctl("scale", "2")
    assert r.returncode == 0 and "5 -> 2" in r.stdout, r
    retired = [w for w in s.status()["workers"] if w["state"] == "stopping"]
    assert len(retired) == 3 and {w["id"] for w in retired} == {3, 4, 5}   # the newest go
    for t in threads:
        t.join(30)
    assert results == [200] * 5
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
