"""max_rss: a worker whose memory grows past it is replaced, the
replacement ready first, under load through the proxy: no GET or HEAD
fails; the reason shows in the log and in `supctl status`."""
import os
import shutil
import threading
import time

from conftest import APPS, wait_for
from opsutil import assert_no_failures, get_status, ops_stack, under_load  # noqa: F401


def slow_loading_app(tmpdir):
    """sup_app behind a 1 s import, so that the hand-over lasts a while."""
    d = os.path.join(tmpdir, "app")
    os.makedirs(d)
    shutil.copy(os.path.join(APPS, "sup_app.py"), d)
    with open(os.path.join(d, "slow_app.py"), "w") as f:
        f.write("import time\ntime.sleep(1)\nfrom sup_app import application  # noqa: E402,F401\n")
    return d


def test_max_rss_replaces_a_grown_worker_without_failures(ops_stack, tmpdir_short):
    s = ops_stack(workers=2, module="slow_app:application", chdir=slow_loading_app(tmpdir_short),
                  supervisor_extra="max_rss = 80m")
    first = set(s.serving_pids())
    assert all(w["rss"] < 60 << 20 for w in s.status()["workers"]), s.status()
    reasons, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            st = s.status() or {"workers": []}
            reasons.update((w["state"], w["reason"]) for w in st["workers"] if w["reason"])
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        def grow(i):
            if i == 1:
                assert get_status(s.port, "/grow?100") == 200
        res, _ = under_load(s, 6, 1, grow)
        wait_for(lambda: "over max_rss" in s.log_text(10**6), timeout=20, what="the max_rss replacement")
    finally:
        done.set()
        watcher.join()
    assert_no_failures(res, s, min_requests=200)
    log = s.log_text(10**6)
    assert "uses" in log and "over max_rss (80.0 MiB)" in log, log
    assert "recycled (max_rss)" in log, log
    st = s.status()
    assert st["restarts"]["max_rss"] == 1 and st["restarts"]["crash"] == 0, st["restarts"]
    assert ("recycling", "max_rss") in reasons, reasons
    # Exactly one of the first workers went; the other, small, stayed.
    assert len(first - set(s.serving_pids())) == 1
    assert len(s.serving_pids()) == 2
