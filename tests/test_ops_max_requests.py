"""Workers recycled after max_requests = 50 under load: no GET or HEAD fails."""
import pytest

from conftest import wait_for
from opsutil import MODES, mode_kw, assert_no_failures, ops_stack, under_load  # noqa: F401


@pytest.mark.parametrize("mode", MODES)
def test_max_requests_recycles_without_failures(ops_stack, mode):
    s = ops_stack(**mode_kw(mode, workers=2, supervisor_extra="max_requests = 50"))
    first = set(s.serving_pids())
    res, _ = under_load(s, 5, 5, lambda i: None)
    st = s.status()
    # A worker at its limit serves on until its replacement has loaded.
    wait_for(lambda: not first & set(s.serving_pids()), timeout=30, what="every first worker to be recycled")
    assert st["generation"] == 1
    assert_no_failures(res, s, min_requests=300)
