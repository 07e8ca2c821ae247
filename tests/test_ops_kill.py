"""kill -9 of workers under load: the proxy retries what a dead
worker did not answer, appstackd replaces it; no GET or HEAD fails."""
import pytest

from opsutil import MODES, mode_kw, assert_no_failures, kill_random, ops_stack, under_load  # noqa: F401


@pytest.mark.parametrize("mode", MODES)
def test_kill_9_any_worker_every_half_second(ops_stack, mode):
    # The victim may be busy, idle, still loading the app, or a replacement
    # that has served for a few milliseconds only.
    s = ops_stack(**mode_kw(mode, workers=2))
    killed = []

    def kill(i):
        st = s.status()
        pids = [w["pid"] for w in st["workers"] if w["pid"]] if st else []
        if pids:
            killed.append(kill_random(pids))

    res, _ = under_load(s, 6, 0.5, kill)
    assert len(killed) >= 6, killed
    s.wait_serving()
    assert not set(killed) & set(s.serving_pids())
    assert_no_failures(res, s)
