"""limit_req and limit_conn in appstack-proxy, per client address: a
client over its rate gets 429 while another is unaffected, bursts wait or
pass (nodelay), concurrent requests are capped, limits of a site and of a
location (one that only forwards), limit_allow, the status settable, and a
table that stays bounded with 100,000 distinct clients (from a trusted
PROXY-protocol sender and X-Forwarded-For). Distinct loopback addresses
stand for distinct hosts."""
import os
import socket
import threading
import time

import pytest

from conftest import free_port, wait_for
from proxyutil import ENV, Proxy, Upstream, ok, proxy_config, read_response


def ask(port, source, path="/", extra=b"", prefix=b""):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(prefix + f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".encode() + extra + b"\r\n")
    with s, s.makefile("rb") as f:
        return read_response(f)


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "f.txt").write_text("file\n")
    return str(d)


def start(tmp_path, up, extra, locations=""):
    port = free_port()
    env = dict(ENV)
    if "ASAN_OPTIONS" in env:       # freed memory kept for checking is not what the proxy holds
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
    return Proxy(proxy_config(str(tmp_path), port, [up.addr], locations, extra=extra), port, env=env)


def test_over_rate_client_gets_429_another_is_unaffected(tmp_path):
    up = Upstream()
    p = start(tmp_path, up, "limit_req = 1r/m burst=3 nodelay")
    try:
        a = [ask(p.port, "127.0.0.5").status for _ in range(8)]
        b = [ask(p.port, "127.0.0.6").status for _ in range(4)]
        assert a == [200] * 4 + [429] * 4      # one, then the burst of 3, then refused
        assert b == [200] * 4
        assert "limit_req: " in p.log_text() and "the last from 127.0.0.5" in p.log_text()
        assert len(up.requests) == 8           # refused requests never reach the upstream
    finally:
        p.stop()
        up.close()


def test_a_burst_waits_its_turn_without_nodelay(tmp_path, files):
    up = Upstream()
    p = start(tmp_path, up, "limit_req = 4r/s burst=4", f"[location /s/]\nalias = {files}/\n")
    try:
        t0 = time.monotonic()
        got = [ask(p.port, "127.0.0.5", "/s/f.txt").status for _ in range(5)]
        # the fifth request waited for four excess ones to leak at 4 per second
        assert got == [200] * 5 and time.monotonic() - t0 > 0.7
        # ten at once: beyond the burst they are refused, not queued
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(ask(p.port, "127.0.0.7", "/s/f.txt").status))
                   for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(statuses)[-1] == 429 and statuses.count(200) >= 5
    finally:
        p.stop()
        up.close()


def test_limit_conn_caps_requests_at_once(tmp_path):
    release = threading.Event()

    def handler(req):
        if req.target == "/slow":
            release.wait(20)
        return ok(b"done")
    up = Upstream(handler)
    p = start(tmp_path, up, "limit_conn = 1\nlimit_conn_status = 503")
    try:
        results = []
        t = threading.Thread(target=lambda: results.append(ask(p.port, "127.0.0.5", "/slow").status))
        t.start()
        wait_for(lambda: any(r.target == "/slow" for r in up.requests), what="the slow request upstream")
        assert ask(p.port, "127.0.0.5", "/other").status == 503
        assert ask(p.port, "127.0.0.6", "/other").status == 200
        release.set()
        t.join(20)
        assert results == [200]
        assert ask(p.port, "127.0.0.5", "/other").status == 200   # counted no more
    finally:
        release.set()
        p.stop()
        up.close()


def test_site_and_location_limits_and_the_allow_list(tmp_path, files):
    up = Upstream()
    port = free_port()
    cfg = proxy_config(str(tmp_path), port, [], extra="limit_allow = 127.0.0.9\nlimit_req_status = 503\n")
    with open(cfg, "a") as f:
        f.write(f"""
[site other]
server_name = other.test
upstream = {up.addr}

[site shop]
server_name = shop.test
upstream = {up.addr}
limit_req = 1r/m burst=1 nodelay

[location /login/]
limit_req = 1r/m

[location /s/]
alias = {files}/
""")
    p = Proxy(cfg, port)
    try:
        get = lambda source, host, path: _host(port, source, host, path)     # noqa: E731
        assert [get("127.0.0.5", "shop.test", "/login/") for _ in range(2)] == [200, 503]   # the location's
        assert [get("127.0.0.5", "shop.test", "/a") for _ in range(3)] == [200, 200, 503]   # the site's
        assert [get("127.0.0.5", "shop.test", "/s/f.txt") for _ in range(1)] == [503]       # site's table, static
        assert [get("127.0.0.5", "other.test", "/a") for _ in range(5)] == [200] * 5       # no limit there
        assert [get("127.0.0.9", "shop.test", "/login/") for _ in range(5)] == [200] * 5   # allowed
        assert up.requests[0].target == "/login/"       # a location without alias forwards
    finally:
        p.stop()
        up.close()


def _host(port, source, host, path):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    with s, s.makefile("rb") as f:
        return read_response(f).status


def test_memory_stays_bounded_with_100000_clients(tmp_path, files):
    up = Upstream()
    pp_port = free_port()
    p = start(tmp_path, up, f"real_ip_from = 127.0.0.1\nlisten = 127.0.0.1:{pp_port} proxy_protocol\n"
              "limit_zone_size = 256k\naccess_log = off", f"[location /s/]\nalias = {files}/\nlimit_req = 1r/m\n")
    try:
        def via_xff(addrs):
            """One keep-alive connection, requests pipelined 500 at a time."""
            statuses = []
            with socket.create_connection(("127.0.0.1", p.port), timeout=60) as s:
                f = s.makefile("rb")
                for i in range(0, len(addrs), 500):
                    batch = addrs[i:i + 500]
                    s.sendall(b"".join(b"GET /s/f.txt HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: "
                                       + a.encode() + b"\r\n\r\n" for a in batch))
                    statuses += [read_response(f).status for _ in batch]
            return statuses

        assert via_xff(["10.9.9.9", "10.9.9.9"]) == [200, 429]
        rss0 = p.rss_kib()
        # 2,000 clients named by PROXY protocol headers from a trusted sender
        for i in range(2000):
            header = f"PROXY TCP4 10.1.{i // 256}.{i % 256} 127.0.0.1 {1024 + i} 80\r\n".encode()
            assert ask(pp_port, "127.0.0.1", "/s/f.txt", prefix=header).status == 200
        # and 98,000 more by X-Forwarded-For
        addrs = [f"10.{2 + i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(98000)]
        statuses = via_xff(addrs)
        assert statuses.count(200) == len(addrs)
        grown = p.rss_kib() - rss0
        # 100,000 clients at 56 bytes would be 5.5 MiB; the table holds 256 KiB
        assert grown < 3 << 10, f"RSS grew by {grown} KiB"
        # the first client was forgotten (the least recently seen): its limit starts afresh
        assert via_xff(["10.9.9.9"]) == [200]
    finally:
        p.stop()
        up.close()
