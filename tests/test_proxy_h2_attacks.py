"""HTTP/2 attacks against appstack-proxy, each in its real shape on raw
frames: rapid reset (CVE-2023-44487), CONTINUATION flood (CVE-2024-28182),
an HPACK bomb, an oversized header list, SETTINGS and PING floods, too many
concurrent streams, and a slow reader holding many streams. For each: the
attacker is stopped or refused, the proxy's RSS stays bounded, and another
client's requests keep succeeding quickly meanwhile."""
import os
import socket
import struct
import tempfile
import threading
import time

import pytest

from conftest import free_port
from h2util import (ACK, CONTINUATION, END_HEADERS, END_STREAM, HEADERS, PING, PREFACE, RST_STREAM, SETTINGS,
                    Client, Victim, drain_until_closed, encoder, frame, request_headers)
from proxyutil import ENV, Proxy, Upstream, ok

INTERNAL_ERROR, ENHANCE_YOUR_CALM = 0x2, 0xb
RSS_GROWTH_LIMIT_KIB = 40 << 10


@pytest.fixture
def target():
    with tempfile.TemporaryDirectory(prefix="as-h2a-", dir="/tmp") as d:
        static = os.path.join(d, "static")
        os.makedirs(static)
        with open(os.path.join(static, "small.txt"), "wb") as f:
            f.write(b"small\n")
        with open(os.path.join(static, "big.bin"), "wb") as f:
            f.write(os.urandom(4 << 20))
        up = Upstream(lambda req: ok(b"x" * (1 << 20) if req.target.startswith("/mega") else b"app"))
        h2c, plain = free_port(), free_port()
        cfg = os.path.join(d, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{h2c} http2\nlisten = 127.0.0.1:{plain}\n"
                    f"upstream = {up.addr}\n\n[location /static/]\nalias = {static}/\n")
        env = dict(ENV)
        if "ASAN_OPTIONS" in env:       # freed memory kept for checking is not what the proxy holds
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
        proxy = Proxy(cfg, h2c, env=env)
        proxy.h2c, proxy.plain, proxy.up = h2c, plain, up
        proxy.rss0 = proxy.rss_kib()
        try:
            yield proxy
        finally:
            proxy.stop()
            up.close()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return s


def check_bystanders(proxy, victim, peak_rss):
    victim.finish()
    assert not victim.failures, victim.failures[:3]
    assert len(victim.latencies) >= 3, "the other client got almost nothing done"
    assert max(victim.latencies) < 2.0, max(victim.latencies)
    assert peak_rss - proxy.rss0 < RSS_GROWTH_LIMIT_KIB, (proxy.rss0, peak_rss)
    # And the proxy serves HTTP/2 as before.
    c = Client(proxy.h2c)
    assert c.get("/static/small.txt")[0] == 200
    c.close()


class RssWatch:
    def __init__(self, proxy):
        self.proxy, self.peak, self.stop = proxy, proxy.rss_kib(), threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proxy.rss_kib())
            time.sleep(0.05)

    def done(self):
        self.stop.set()
        self.t.join()
        return self.peak


def attack(proxy, fn):
    victim = Victim(proxy.plain)
    rss = RssWatch(proxy)
    time.sleep(0.2)
    try:
        result = fn()
    finally:
        peak = rss.done()
    check_bystanders(proxy, victim, peak)
    return result


def test_rapid_reset(target):
    """Streams opened and cancelled at once, by the thousand: nghttp2's reset
    bucket ends the connection long before the upstream sees them all."""
    def run():
        s = connect(target.h2c)
        enc = encoder()
        block = enc.encode(request_headers("/app/reset"))
        burst = b""
        sent = 0
        try:
            for i in range(20000):
                sid = 2 * i + 1
                burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, block) + \
                    frame(RST_STREAM, 0, sid, struct.pack(">I", 8))     # CANCEL
                if len(burst) > 32768:
                    s.sendall(burst)
                    sent += 1
                    burst = b""
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, goaway = drain_until_closed(s)
        s.close()
        return goaway
    goaway = attack(target, run)
    assert goaway == INTERNAL_ERROR         # what nghttp2's reset limit says
    assert len(target.up.requests) < 5000, len(target.up.requests)


def test_continuation_flood(target):
    """A header block that never ends: CONTINUATION frames without
    END_HEADERS are cut off after a handful."""
    def run():
        s = connect(target.h2c)
        enc = encoder()
        s.sendall(frame(HEADERS, 0, 1, enc.encode(request_headers("/app/c"))))
        piece = enc.encode([("x-filler", "a" * 100)])
        frames = 0
        try:
            for _ in range(100000):
                s.sendall(frame(CONTINUATION, 0, 1, piece * 10))
                frames += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        drain_until_closed(s)
        s.close()
        return frames
    frames = attack(target, run)
    assert frames < 100000, "the proxy read an endless header block"


def test_hpack_bomb(target):
    """One 4 KiB field in the dynamic table, then referenced thousands of
    times: 16 KiB on the wire would decode to 64 MiB. The connection ends at
    the decoded-size cap."""
    def run():
        s = connect(target.h2c)
        enc = encoder()
        first = enc.encode(request_headers("/app/b") + [("x-bomb", "b" * 4000)])
        index = enc.encode([("x-bomb", "b" * 4000)])     # now one byte: a dynamic table index
        assert len(index) <= 2
        s.sendall(frame(HEADERS, END_STREAM, 1, first + index * 8000))
        try:
            for _ in range(4):
                s.sendall(frame(CONTINUATION, 0, 1, index * 16000))
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, goaway = drain_until_closed(s)
        s.close()
        return goaway
    goaway = attack(target, run)
    assert goaway == ENHANCE_YOUR_CALM
    assert not any(r.target == "/app/b" for r in target.up.requests)


def test_oversized_header_list_is_431(target):
    def run():
        c = Client(target.h2c)
        status, _, _ = c.get("/app/o", headers=[(f"x-h{i}", "v" * 1000) for i in range(90)])
        c.close()
        return status
    assert attack(target, run) == 431


def flood(target, make):
    s = connect(target.h2c)
    sent = 0
    try:
        for _ in range(200000):
            s.sendall(make() * 64)
            sent += 64
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    s.close()
    return sent


def test_settings_flood(target):
    """SETTINGS frames whose ACKs the client never reads: nghttp2's limit on
    queued ACKs ends the connection."""
    sent = attack(target, lambda: flood(target, lambda: frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100))))
    assert sent < 200000 * 64


def test_ping_flood(target):
    sent = attack(target, lambda: flood(target, lambda: frame(PING, 0, 0, b"12345678")))
    assert sent < 200000 * 64


def test_too_many_concurrent_streams(target):
    """The 129th open stream is refused; the first 128 are served."""
    def run():
        c = Client(target.h2c)
        sids = [c.send("/app/slow", end=False) for _ in range(200)]
        c.pump(lambda: len(c.resets) >= 72 or c.goaway is not None, timeout=20)
        refused = [sid for sid, code in c.resets.items() if code in (7, 1)]   # REFUSED_STREAM / PROTOCOL_ERROR
        for sid in sids[:128]:
            if sid not in c.resets:
                c.conn.end_stream(sid)
        c.flush()
        c.pump(lambda: all(c.responses[s]["done"] for s in sids[:128] if s not in c.resets), timeout=30)
        served = sum(1 for s in sids if c.responses[s]["done"])
        c.close()
        return len(refused), served
    refused, served = attack(target, run)
    assert refused >= 72 and served == 128, (refused, served)


def test_slow_reader_with_many_streams(target):
    """A client asks for 4 MiB files and 1 MiB forwarded answers on 100
    streams and reads nothing: the proxy holds little in memory, the
    workers are free, and others are served."""
    def run():
        c = Client(target.h2c, settings={4: 1 << 20})   # INITIAL_WINDOW_SIZE: let it try to send
        for i in range(100):
            c.send("/static/big.bin" if i % 2 else f"/mega/{i}")
        time.sleep(3)       # not reading
        upstream_done = len([r for r in target.up.requests if r.target.startswith("/mega")])
        rss = target.rss_kib()
        c.close()
        return upstream_done, rss
    upstream_done, rss = attack(target, run)
    assert upstream_done == 50, "the forwarded answers should have been taken from the upstream"
    assert rss - target.rss0 < RSS_GROWTH_LIMIT_KIB
