"""The operations scenarios against the example Django site, whose workers
take far longer to load than the hello app's: reload and max_requests
under load, through the proxy, with no GET or HEAD failing."""
from opsutil import assert_no_failures, django_site, ops_stack, under_load  # noqa: F401


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
    assert not first & set(s.serving_pids()), "no worker was recycled"
    assert_no_failures(res, s, min_requests=100)
