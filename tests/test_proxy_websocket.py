"""WebSocket (and any Upgrade the upstream accepts with 101) through
appstack-proxy: a real echo server (python3-websockets) and daphne with an
ASGI app behind the proxy, python3-websockets as the client: 1,000 echoes,
a 10 MiB message, ping/pong, close codes, a client that does not read while
others keep going, the cap on tunnels, the idle timeout and the access log
entry written at the close."""
import asyncio
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import websockets

from conftest import APPS, free_port, wait_for
from proxyutil import ENV, Proxy, Upstream, get, ok, proxy_config, start_ws_echo


@pytest.fixture(scope="module")
def echo():
    proc, port = start_ws_echo()
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def front(echo, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("ws"))
    port = free_port()
    env = dict(ENV)
    if "ASAN_OPTIONS" in env:       # freed memory kept for checking is not what the proxy holds
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
    p = Proxy(proxy_config(tmp, port, [f"127.0.0.1:{echo}"], extra="max_tunnels = 6"), port, env=env)
    yield p
    p.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def url(port, path="/ws"):
    return f"ws://127.0.0.1:{port}{path}"


def test_thousand_echoes_big_message_ping_and_close(front):
    async def go():
        async with websockets.connect(url(front.port), max_size=None, compression=None) as ws:
            for i in range(1000):
                msg = f"message {i}" if i % 2 else os.urandom(100 + i)
                await ws.send(msg)
                assert await ws.recv() == msg
            big = os.urandom(10 << 20)
            await ws.send(big)
            assert await ws.recv() == big
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)
            await ws.send("close:4001")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.code == 4001 and e.value.reason == "asked"
        async with websockets.connect(url(front.port), compression=None) as ws:
            await ws.send("bye")
            assert await ws.recv() == "bye"
        assert ws.close_code == 1000
    run(go())
    # the entry is written at the close: status 101, the bytes the client got, how long it lasted
    wait_for(lambda: len(re.findall(r'"GET /ws HTTP/1.1" 101 (\d+) ', front.log_text())) >= 2, what="log entries")
    sizes = [int(n) for n in re.findall(r'"GET /ws HTTP/1.1" 101 (\d+) ', front.log_text())]
    assert max(sizes) > 10 << 20


def test_upgrade_fields_reach_the_upstream_and_a_refusal_is_an_answer(tmp_path):
    up = Upstream(lambda req: ok(b"no upgrade here", "426 Upgrade Required"))
    port = free_port()
    p = Proxy(proxy_config(str(tmp_path), port, [up.addr]), port)
    try:
        r = get(port, "/ws", {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "x" * 24,
                              "Sec-WebSocket-Version": "13"})
        assert r.status == 426 and r.body == b"no upgrade here"
        assert up.requests[-1].header("Upgrade") == ["websocket"]
        assert up.requests[-1].header("Connection") == ["upgrade"]
        r = get(port, "/plain", {"Upgrade": "websocket"})     # no Connection: upgrade: not an upgrade
        assert r.status == 426 and up.requests[-1].header("Upgrade") == []
    finally:
        p.stop()
        up.close()


def test_101_to_a_request_that_asked_for_none_is_502(tmp_path):
    up = Upstream(lambda req: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    port = free_port()
    p = Proxy(proxy_config(str(tmp_path), port, [up.addr]), port)
    try:
        assert get(port, "/").status == 502
    finally:
        p.stop()
        up.close()


def test_a_client_that_does_not_read_stalls_no_one(front):
    # a raw client asks for 32 MiB and reads nothing
    s = socket.create_connection(("127.0.0.1", front.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    payload = b"flood:32"
    mask = b"\x01\x02\x03\x04"
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    rss0 = front.rss_kib()

    async def others():
        async with websockets.connect(url(front.port), compression=None) as ws:
            for i in range(300):
                await ws.send(f"meanwhile {i}")
                assert await ws.recv() == f"meanwhile {i}"
    t0 = time.monotonic()
    run(others())
    elapsed = time.monotonic() - t0
    time.sleep(0.5)
    # the proxy holds a bounded part of the flood, not 32 MiB
    assert front.rss_kib() - rss0 < 8 << 10, (rss0, front.rss_kib())
    s.close()
    assert elapsed < 30


def test_tunnels_are_counted_and_capped(front):
    async def go():
        conns = [await websockets.connect(url(front.port), compression=None) for _ in range(6)]
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(url(front.port), compression=None)
        assert e.value.status_code == 503
        await conns[0].close()
        await asyncio.sleep(0.3)
        extra = await websockets.connect(url(front.port), compression=None)
        await extra.send("again")
        assert await extra.recv() == "again"
        for c in conns[1:] + [extra]:
            await c.close()
    run(go())
    assert "max_tunnels (6) reached" in front.log_text()


def test_idle_tunnel_is_closed_after_proxy_read_timeout(echo, tmp_path):
    port = free_port()
    p = Proxy(proxy_config(str(tmp_path), port, [f"127.0.0.1:{echo}"], extra="proxy_read_timeout = 1"), port)

    async def go():
        async with websockets.connect(url(port), compression=None, ping_interval=None) as ws:
            # traffic for twice the timeout: the timer fires meanwhile and
            # must find the tunnel busy, whichever side moved last
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.2:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                await asyncio.sleep(0.3)
            t0 = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            return time.monotonic() - t0, e.value.code
    try:
        idle, code = run(go())
        assert 0.6 < idle < 10 and code == 1006
        wait_for(lambda: re.search(r'"GET /ws HTTP/1.1" 101 \d+ "-" "[^"]*" [2-4]\.\d+ ', p.log_text()),
                 what="the entry of the closed tunnel")
    finally:
        p.stop()


def test_daphne_asgi_app_behind_the_proxy(tmp_path):
    dport, port = free_port(), free_port()
    d = subprocess.Popen(["/usr/bin/python3", "-m", "daphne", "-b", "127.0.0.1", "-p", str(dport), "asgi_ws_echo:application"],
                         cwd=APPS, env=dict(os.environ, PYTHONPATH=APPS), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    p = None
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", dport), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, timeout=30, what="daphne")
        p = Proxy(proxy_config(str(tmp_path), port, [f"127.0.0.1:{dport}"]), port)
        assert get(port, "/").body == b"asgi http\n"

        async def go():
            async with websockets.connect(url(port, "/chat/"), compression=None) as ws:
                for i in range(50):
                    await ws.send(f"hello {i}")
                    assert await ws.recv() == f"echo hello {i}"
        run(go())
    finally:
        if p:
            p.stop()
        d.kill()
        d.wait()


def test_wss_over_a_tls_listen_with_http2_on(echo, tmp_path):
    """A client that negotiates HTTP/1.1 on an h2-enabled HTTPS listen
    upgrades as over plain HTTP/1.1, through TLS (HTTP/2 clients use
    extended CONNECT: test_proxy_h2_websocket.py)."""
    from tlsutil import ca_in
    ca = ca_in(str(tmp_path))
    cert, key = ca.issue(["localhost"])
    port = free_port()
    cfg = proxy_config(str(tmp_path), port, [f"127.0.0.1:{echo}"],
                       extra=f"certificate = {cert}\ncertificate_key = {key}")
    with open(cfg) as f:
        text = f.read().replace(f"listen = 127.0.0.1:{port}", f"listen = 127.0.0.1:{port} ssl")
    with open(cfg, "w") as f:
        f.write(text)
    p = Proxy(cfg, port)

    async def go():
        ctx = ca.client_context(alpn=["http/1.1"])
        async with websockets.connect(f"wss://localhost:{port}/ws", ssl=ctx, max_size=None, compression=None) as ws:
            for i in range(200):
                await ws.send(f"secure {i}")
                assert await ws.recv() == f"secure {i}"
            big = os.urandom(3 << 20)
            await ws.send(big)
            assert await ws.recv() == big
    try:
        run(go())
    finally:
        p.stop()
