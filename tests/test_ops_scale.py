"""supctl scale 2 -> 8 -> 2 under load: no GET or HEAD fails."""
import pytest

from opsutil import MODES, mode_kw, assert_no_failures, ops_stack, under_load  # noqa: F401


@pytest.mark.parametrize("mode", MODES)
def test_scale_2_8_2_under_load(ops_stack, mode):
    s = ops_stack(**mode_kw(mode, workers=2))
    codes = []
    res, n = under_load(s, 6, 1.5, lambda i: codes.append(s.supctl("scale", "8" if i % 2 == 0 else "2").returncode))
    assert n >= 3 and codes == [0] * n, codes
    assert_no_failures(res, s)
