"""Response heads as real apps send them: many Set-Cookie lines and large
cookies pass (at least nginx's practical limits); a head over
proxy_buffer_size is a 502 with a log line that names the limit."""
from proxyutil import Upstream, get, ok, start_proxy


def cookies(n, size):
    return "".join(f"Set-Cookie: c{i}={'v' * size}; Path=/; HttpOnly\r\n" for i in range(n))


def test_two_hundred_set_cookie_lines_and_a_32k_head_pass(tmpdir_short):
    many, big = cookies(200, 20), cookies(8, 4000)     # ~9 KB in 200 lines; ~32 KB in 8
    up = Upstream(lambda req: ok(b"many", extra=many) if req.target == "/many" else ok(b"big", extra=big))
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        r = get(proxy.port, "/many")
        assert r.status == 200 and r.body == b"many"
        assert r.raw_head.count(b"Set-Cookie:") == 200
        r = get(proxy.port, "/big")
        assert r.status == 200 and r.body == b"big"
        assert r.raw_head.count(b"Set-Cookie:") == 8 and len(r.raw_head) > 32000
        assert b"c7=" + b"v" * 4000 in r.raw_head
    finally:
        proxy.stop()
        up.close()


def test_head_over_proxy_buffer_size_is_502_and_logged(tmpdir_short):
    up = Upstream(lambda req: ok(b"x", extra=cookies(6, 4000)))     # ~24 KB head
    proxy = start_proxy(tmpdir_short, [up.addr], extra="proxy_buffer_size = 16k")
    try:
        r = get(proxy.port, "/over")
        assert r.status == 502
        log = proxy.log_text()
        assert "response head larger than proxy_buffer_size (16384 bytes)" in log, log
        assert "GET /over" in log
    finally:
        proxy.stop()
        up.close()
