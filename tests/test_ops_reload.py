"""supctl reload under load, through the proxy: no request fails."""
import pytest

from opsutil import MODES, mode_kw, assert_no_failures, ops_stack, under_load  # noqa: F401


@pytest.mark.parametrize("mode", MODES)
def test_reload_every_second_under_load(ops_stack, mode):
    # supctl(8): "No request is refused or fails" during a reload, whatever its
    # method: a POST cannot be retried, so none may reach a worker that is
    # about to close its connection without reading it.
    s = ops_stack(**mode_kw(mode, workers=2))
    gen0 = s.status()["generation"]
    codes = []
    res, n = under_load(s, 6, 1.0, lambda i: codes.append(s.supctl("reload").returncode),
                        methods=("GET", "POST", "HEAD", "POST"))
    assert n >= 4 and codes == [0] * n, codes
    assert s.status()["generation"] >= gen0 + n
    assert sum(v for (m, _), v in res["by_status"].items() if m == "POST") > 50, res["by_status"]
    assert_no_failures(res, s)
