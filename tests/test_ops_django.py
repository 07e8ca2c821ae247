"""The operations scenarios against the example Django site, whose workers
take far longer to load than the hello app's: reload and max_requests
under load, through the proxy, with no GET or HEAD failing."""
import time

from conftest import wait_for
from opsutil import Probe, assert_no_failures, django_site, kill_random, ops_stack, under_load  # noqa: F401


def test_django_reload_under_load(ops_stack, django_site):
    s = ops_stack(workers=2, **django_site)
    codes = []
    res, n = under_load(s, 6, 2.5, lambda i: codes.append(s.supctl("reload").returncode), conns=2)
    assert n >= 2 and codes == [0] * n, codes
    assert_no_failures(res, s, min_requests=50)


def test_django_max_requests_50(ops_stack, django_site):
    s = ops_stack(workers=2, supervisor_extra="max_requests = 50", **django_site)
    first = set(s.serving_pids())
    res, _ = under_load(s, 6, 6, lambda i: None, conns=2)
    # A worker at its limit serves on until its replacement has loaded.
    wait_for(lambda: not first & set(s.serving_pids()), timeout=30, what="every first worker to be recycled")
    assert_no_failures(res, s, min_requests=100)


def test_django_max_requests_keeps_every_worker_serving(ops_stack, django_site):
    s = ops_stack(workers=2, supervisor_extra="max_requests = 20", **django_site)
    first = set(s.serving_pids())
    low = []
    probe = Probe("127.0.0.1", s.port, conns=2, timeout=30)
    try:
        # Under load until every first worker has been replaced (the
        # replacements' load time on a busy machine), 4 s at least.
        t_min, t_max = time.monotonic() + 4, time.monotonic() + 30
        while time.monotonic() < t_max:
            serving = s.serving_pids()
            low.append(len(serving))
            if time.monotonic() > t_min and not first & set(serving):
                break
            time.sleep(0.05)
    finally:
        res = probe.stop()
    assert not first & set(s.serving_pids()), "no worker was recycled"
    assert min(low) >= 2, f"serving workers seen while recycling: {sorted(set(low))}; load: {res['requests']}"


def test_django_worker_killed_while_loading_is_replaced_without_backoff(ops_stack, django_site):
    s = ops_stack(workers=2, **django_site)
    for _ in range(3):
        s.supctl("scale", "+1")
        loading = wait_for(lambda: [w["pid"] for w in s.status()["workers"]
                                    if w["state"] == "loading" and w["pid"]], timeout=10,
                           what="a loading worker")
        kill_random(loading)
        s.supctl("scale", "-1")
        s.wait_serving()
    assert "failed worker start" not in s.log_text(10**6)
