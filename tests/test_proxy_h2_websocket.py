"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT) through appstack-proxy:
python3-h2 opens the streams and python3-websockets' own protocol object
frames the messages, against the python3-websockets echo server of the
HTTP/1.1 tests (which the proxy asks for an HTTP/1.1 upgrade); headless
Chromium does the same by itself on an HTTPS page. Echoes, a 10 MiB
message both ways, close codes, stream ends and resets mapped to the
upstream connection and back, the validation of the extended CONNECT,
clients that do not read (the proxy's memory stays bounded and nothing is
lost), the tunnel cap, the idle timeout, TERM, and ordinary requests on
the same connection while tunnels are open."""
import base64
import hashlib
import os
import re
import signal
import socket
import tempfile
import threading
import time

import h2.config
import pytest

from browserutil import CHROMIUM, Browser
from conftest import free_port, wait_for
from h2util import WebSocketClient, WebSocketClosed
from proxyutil import ENV, Proxy, Upstream, ok, start_ws_echo
from tlsutil import CA

CONNECT_ERROR, CANCEL, PROTOCOL_ERROR = 0xa, 0x8, 0x1


def front_config(d, port, upstream, extra=""):
    static = os.path.join(d, "static")
    os.makedirs(static, exist_ok=True)
    with open(os.path.join(static, "page.html"), "w") as f:
        f.write("<!doctype html><title>page</title><p>static page\n")
    cfg = os.path.join(d, f"appstack-{port}.ini")
    with open(cfg, "w") as f:
        f.write(f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{port} http2\nupstream = {upstream}\n{extra}\n\n"
                f"[location /static/]\nalias = {static}/\n")
    return cfg


@pytest.fixture(scope="module")
def echo():
    proc, port = start_ws_echo()
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def front(echo):
    env = dict(ENV)
    if "ASAN_OPTIONS" in env:       # freed memory kept for checking is not what the proxy holds
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
    with tempfile.TemporaryDirectory(prefix="as-h2ws-", dir="/tmp") as d:
        port = free_port()
        p = Proxy(front_config(d, port, f"127.0.0.1:{echo}"), port, env=env)
        try:
            yield p
        finally:
            p.stop()


def entries(proxy, path="/ws"):
    return re.findall(rf'"CONNECT {path} HTTP/2.0" (\d+) (\d+) ', proxy.log_text())


def test_settings_echoes_big_message_and_close_codes(front):
    c = WebSocketClient(front.port)
    assert c.conn.remote_settings.enable_connect_protocol == 1
    sid, status, head = c.open("/ws", [("sec-websocket-version", "13")])
    assert status == 200, head
    # the upstream's fields come through; those of the HTTP/1.1 handshake do not
    assert "sec-websocket-accept" not in head and "upgrade" not in head and "connection" not in head
    for i in range(1000):
        msg = f"message {i}" if i % 2 else os.urandom(100 + i)
        c.send_ws(sid, msg)
        assert c.recv_ws(sid) == msg
    big = os.urandom(10 << 20)          # ten times the stream's window, both ways
    c.send_ws(sid, big)
    assert c.recv_ws(sid) == big
    c.send_ws(sid, "close:4001")
    with pytest.raises(WebSocketClosed) as e:
        c.recv_ws(sid)
    assert (e.value.code, e.value.reason) == (4001, "asked")
    # the upstream's end is an END_STREAM, then the client's half is reset without error
    c.pump(lambda: sid in c.resets)
    assert c.responses[sid]["done"] and c.resets[sid] == 0
    # the client closes: its END_STREAM reaches the upstream as a FIN after the close frame
    sid, status, _ = c.open("/ws", [("sec-websocket-version", "13")])
    c.send_ws(sid, "bye")
    assert c.recv_ws(sid) == "bye"
    c.close_ws(sid, 1000, "done")
    with pytest.raises(WebSocketClosed) as e:
        c.recv_ws(sid)
    assert e.value.code == 1000
    c.pump(lambda: c.responses[sid]["done"])
    c.close()
    wait_for(lambda: len(entries(front)) >= 2, what="the access log entries, written at the close")
    assert max(int(n) for _, n in entries(front)) > 10 << 20
    assert {s for s, _ in entries(front)} == {"200"}


def test_plain_requests_share_the_connection_with_open_tunnels(front):
    c = WebSocketClient(front.port)
    tunnels = [c.open("/ws", [("sec-websocket-version", "13")])[0] for _ in range(3)]
    for i in range(20):
        for sid in tunnels:
            c.send_ws(sid, f"{sid} says {i}")
        status, _, body = c.get("/static/page.html")
        assert status == 200 and body == b"<!doctype html><title>page</title><p>static page\n"
        # forwarded: the echo server answers a plain GET 426 itself
        status, head, body = c.get(f"/plain?{i}")
        assert status == 426 and b"WebSocket" in body, (head, body)
        for sid in tunnels:
            assert c.recv_ws(sid) == f"{sid} says {i}"
    c.close()


def test_extended_connect_is_validated(front):
    """nghttp2 requires :scheme, :path and :authority with :protocol
    (RFC 8441 4), and :protocol only with CONNECT; the proxy answers other
    protocols and plain CONNECT as before, and a WebSocket that ends at
    once or names a static location is no tunnel."""
    cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
                                    normalize_outbound_headers=False)
    c = WebSocketClient(front.port, config=cfg)
    base = {":method": "CONNECT", ":protocol": "websocket", ":scheme": "http", ":path": "/ws",
            ":authority": "localhost"}

    def ask(headers, end_stream=False):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, list(headers.items()), end_stream=end_stream)
        c.responses[sid] = {"headers": None, "body": b"", "done": False}
        c.flush()
        c.pump(lambda: c.responses[sid]["done"] or sid in c.resets)
        head = c.responses[sid]["headers"]
        return (int(head[":status"]) if head else None), c.resets.get(sid)

    for missing in (":path", ":scheme", ":authority"):
        h = {k: v for k, v in base.items() if k != missing}
        if missing == ":authority":
            h["host"] = "localhost"
        assert ask(h) == (None, PROTOCOL_ERROR), missing
    assert ask({**base, ":method": "GET"}) == (None, PROTOCOL_ERROR)
    assert ask({**base, ":protocol": "something-else"})[0] == 501
    assert ask({":method": "CONNECT", ":authority": "localhost:443"})[0] == 400
    assert ask(base, end_stream=True)[0] == 400       # a tunnel whose client has ended already
    assert ask({**base, ":path": "/static/page.html"})[0] == 405
    sid, status, _ = c.open("/ws")          # the connection is fine
    assert status == 200
    c.close()


def handshake(req):
    key = req.header("Sec-WebSocket-Key")[0]
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")


class RawUpstream(Upstream):
    """The upstream's side of the handshake by hand, then per path: /fin
    reads until the proxy's FIN and answers what it got, /rst resets its
    connection, /deaf never reads, /eof waits for the proxy to close."""

    def __init__(self):
        self.events = []
        self.release = threading.Event()
        super().__init__(self.answer)

    def answer(self, req):
        if req.target == "/refused":
            return ok(b"not for you", "403 Forbidden")
        if req.target == "/plain200":
            return ok(b"no upgrade")
        if req.target == "/badaccept":
            return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                   b"Sec-WebSocket-Accept: c29tZXRoaW5nIGVsc2UgZW50aXJlbHk=\r\n\r\n"

        def tunnel(sock):
            sock.sendall(handshake(req))
            if req.target == "/rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                sock.close()
                return False
            if req.target == "/deaf":
                self.release.wait(60)
                return False
            got = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
            self.events.append((req.target, got))
            if req.target == "/fin":
                sock.sendall(b"you said " + got)
            sock.close()
            return False
        return tunnel


@pytest.fixture
def raw_front():
    up = RawUpstream()
    with tempfile.TemporaryDirectory(prefix="as-h2ws-", dir="/tmp") as d:
        port = free_port()
        env = dict(ENV)
        if "ASAN_OPTIONS" in env:
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
        p = Proxy(front_config(d, port, up.addr), port, env=env)
        p.up = up
        try:
            yield p
        finally:
            up.release.set()
            p.stop()
            up.close()


def test_the_upgrade_the_upstream_sees_and_answers_that_are_not_101(raw_front):
    c = WebSocketClient(raw_front.port)
    sid, status, head = c.open("/fin", [("sec-websocket-version", "13"), ("sec-websocket-protocol", "chat, superchat"),
                                        ("sec-websocket-key", "Y2xpZW50J3Mgb3duIGtleQ=="), ("origin", "https://a.test")],
                               framed=False)
    assert status == 200 and head["sec-websocket-protocol"] == "chat"
    req = raw_front.up.requests[-1]
    assert req.method == "GET" and req.target == "/fin"
    assert req.header("Upgrade") == ["websocket"] and req.header("Connection") == ["upgrade"]
    assert req.header("Sec-WebSocket-Version") == ["13"] and req.header("Origin") == ["https://a.test"]
    assert req.header("Sec-WebSocket-Protocol") == ["chat, superchat"] and req.header("Host") == ["localhost"]
    keys = req.header("Sec-WebSocket-Key")          # the proxy's own, not the client's
    assert len(keys) == 1 and keys[0] != "Y2xpZW50J3Mgb3duIGtleQ==" and len(base64.b64decode(keys[0])) == 16
    # END_STREAM is the upstream's FIN; it still answers, and its FIN ends the stream
    c.raw(sid, b"x" * 300_000, end=True)
    c.pump(lambda: c.responses[sid]["done"])
    assert c.responses[sid]["body"] == b"you said " + b"x" * 300_000
    assert raw_front.up.events[-1] == ("/fin", b"x" * 300_000)
    sid, status, _ = c.open("/fin", framed=False)
    assert status == 200 and raw_front.up.requests[-1].header("Sec-WebSocket-Key") != keys
    for path, want in (("/refused", 403), ("/plain200", 502), ("/badaccept", 502)):
        sid, status, head = c.open(path, framed=False)
        assert status == want, (path, head)
        c.pump(lambda: c.responses[sid]["done"])
        if path == "/refused":
            assert c.responses[sid]["body"] == b"not for you"
    log = raw_front.log_text()
    assert "200, not 101, to a WebSocket request over HTTP/2: 502" in log
    assert "101 without the Sec-WebSocket-Accept of the proxy's key: 502" in log
    c.close()


def test_resets_both_ways(raw_front):
    c = WebSocketClient(raw_front.port)
    # the upstream's connection reset: CONNECT_ERROR (RFC 9113 8.5)
    sid, status, _ = c.open("/rst", framed=False)
    assert status == 200
    c.pump(lambda: sid in c.resets)
    assert c.resets[sid] == CONNECT_ERROR
    # the client's reset closes the upstream connection
    sid, status, _ = c.open("/eof", framed=False)
    c.raw(sid, b"before the reset")
    c.conn.reset_stream(sid, CANCEL)
    c.flush()
    wait_for(lambda: ("/eof", b"before the reset") in raw_front.up.events, timeout=10,
             what="the upstream connection closed after the client's reset")
    status, _, body = c.get("/static/page.html")        # the connection lives on
    assert status == 200
    wait_for(lambda: len(re.findall(r'"CONNECT /(rst|eof) HTTP/2.0" 200 ', raw_front.log_text())) == 2,
             what="both entries")
    c.close()


def test_a_deaf_upstream_shuts_the_clients_window(raw_front):
    """The client may send what the upstream takes and the stream's window,
    no more: the proxy gives the window back only as the upstream takes the
    bytes, so it does not hold what the client pushes."""
    c = WebSocketClient(raw_front.port)
    sid, status, _ = c.open("/deaf", framed=False)
    assert status == 200
    rss0 = raw_front.rss_kib()
    c.pending[sid] = bytearray(48 << 20)
    c.flush()
    sent_before = -1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        read_for(c, 1)
        sent = (48 << 20) - len(c.pending[sid])
        if sent == sent_before:
            break           # stalled: no window came back for a second
        sent_before = sent
    assert 0 < sent < 40 << 20, sent       # what the sockets' buffers and the window hold, not all of it
    assert c.conn.local_flow_control_window(sid) < 64 << 10
    assert raw_front.rss_kib() - rss0 < 8 << 10, (rss0, raw_front.rss_kib())
    status, _, _ = c.get("/static/page.html")          # other streams still have the connection's window
    assert status == 200
    c.close()


def read_for(client, seconds):
    """Reads (and answers) what comes for SECONDS."""
    client.sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    try:
        client.pump(lambda: time.monotonic() > deadline, timeout=seconds + 1)
    except socket.timeout:
        pass
    finally:
        client.sock.settimeout(10)


def test_clients_that_do_not_read_hold_bounded_memory_and_lose_nothing(front):
    # one reads its socket but gives no window back; the other, whose window
    # is as large as HTTP/2 allows, reads nothing at all (the sockets' buffers
    # take a few MiB of its 24)
    shut = WebSocketClient(front.port, ack=False)
    deaf = WebSocketClient(front.port, window=(1 << 31) - 1)
    a, status, _ = shut.open("/ws")
    b, status2, _ = deaf.open("/ws")
    assert status == status2 == 200
    rss0 = front.rss_kib()
    shut.send_ws(a, "flood:24")
    deaf.send_ws(b, "flood:24")
    read_for(shut, 1)
    assert sum(len(f.data) for f in shut.frames[a]) < 1 << 20      # the window shut it
    t0 = time.monotonic()
    other = WebSocketClient(front.port)
    sid, status, _ = other.open("/ws")
    for i in range(300):
        other.send_ws(sid, f"meanwhile {i}")
        assert other.recv_ws(sid) == f"meanwhile {i}"
    assert time.monotonic() - t0 < 30
    read_for(shut, 0.5)
    # the proxy holds a bounded part of 48 MiB, not all of it
    assert front.rss_kib() - rss0 < 8 << 10, (rss0, front.rss_kib())
    # the window opens again: everything arrives, in order
    shut.ack_all()
    for client, s in ((shut, a), (deaf, b)):
        got = 0
        while True:
            msg = client.recv_ws(s, timeout=60)
            if msg == "flood done":
                break
            assert msg == b"x" * (1 << 20)
            got += len(msg)
        assert got == 24 << 20
    for client in (shut, deaf, other):
        client.close()


def test_tunnels_are_counted_and_capped(echo):
    with tempfile.TemporaryDirectory(prefix="as-h2ws-", dir="/tmp") as d:
        port = free_port()
        p = Proxy(front_config(d, port, f"127.0.0.1:{echo}", "max_tunnels = 6"), port)
        try:
            capped(p)
        finally:
            p.stop()


def capped(front):
    clients = [WebSocketClient(front.port) for _ in range(2)]
    opened = [(c, c.open("/ws")[0]) for c in clients for _ in range(3)]    # max_tunnels = 6
    sid, status, _ = clients[0].open("/ws")
    assert status == 503
    c, s = opened[0]
    c.conn.reset_stream(s, CANCEL)
    c.flush()

    def another():
        sid, status, _ = clients[1].open("/ws")
        return (sid, status) if status == 200 else None
    sid = wait_for(another, timeout=10, what="a tunnel once one ended")[0]
    clients[1].send_ws(sid, "again")
    assert clients[1].recv_ws(sid) == "again"
    assert "max_tunnels (6) reached" in front.log_text()
    for c in clients:
        c.close()


def test_idle_tunnels_end_and_term_ends_them_at_once(echo):
    with tempfile.TemporaryDirectory(prefix="as-h2ws-", dir="/tmp") as d:
        port = free_port()
        p = Proxy(front_config(d, port, f"127.0.0.1:{echo}", "proxy_read_timeout = 1"), port)
        try:
            c = WebSocketClient(port)
            sid, status, _ = c.open("/ws")
            c.send_ws(sid, "hi")
            assert c.recv_ws(sid) == "hi"
            t0 = time.monotonic()
            c.pump(lambda: sid in c.resets)
            assert c.resets[sid] == CANCEL and 0.8 < time.monotonic() - t0 < 10
            wait_for(lambda: re.search(r'"CONNECT /ws HTTP/2.0" 200 \d+ "-" "-" 1\.\d+ ', p.log_text()),
                     what="the entry of the idle tunnel")
            # TERM: tunnels are reset and the connection told GOAWAY, without waiting for them
            sid, status, _ = c.open("/ws")
            c.send_ws(sid, "still here")
            assert c.recv_ws(sid) == "still here"
            t0 = time.monotonic()
            p.proc.send_signal(signal.SIGTERM)
            c.pump(lambda: sid in c.resets and c.goaway is not None)
            assert c.resets[sid] == CANCEL
            p.proc.wait(10)
            assert time.monotonic() - t0 < 5
            c.close()
        finally:
            p.stop()


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (tests/run installs it)")
def test_chromium_opens_its_websocket_over_http2(echo):
    with tempfile.TemporaryDirectory(prefix="as-h2ws-", dir="/tmp") as d:
        ca = CA(d)
        cert, key = ca.issue(["localhost"])
        port = free_port()
        cfg = front_config(d, port, f"127.0.0.1:{echo}", f"certificate = {cert}\ncertificate_key = {key}")
        with open(cfg) as f:
            text = f.read().replace(f"listen = 127.0.0.1:{port} http2", f"listen = 127.0.0.1:{port} ssl")
        with open(cfg, "w") as f:
            f.write(text)
        p = Proxy(cfg, port)
        browser = Browser(ca.pem)
        try:
            nav = browser.load(f"https://localhost:{port}/static/page.html")
            assert "errorText" not in nav, nav
            assert browser.eval("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
            result = browser.eval(f"""new Promise(done => {{
                const ws = new WebSocket('wss://localhost:{port}/ws'), got = [];
                ws.onopen = () => {{ for (let i = 0; i < 50; i++) ws.send('m' + i); ws.send('x'.repeat(3 << 20)); }};
                ws.onmessage = e => {{ got.push(e.data.length < 100 ? e.data : e.data.length);
                                      if (got.length == 51) ws.send('close:4002'); }};
                ws.onclose = e => done({{got, code: e.code, reason: e.reason}});
                ws.onerror = () => done('error');
            }})""")
            assert result == {"got": [f"m{i}" for i in range(50)] + [3 << 20], "code": 4002, "reason": "asked"}
            # the browser used the page's HTTP/2 connection: the entry says CONNECT over HTTP/2
            wait_for(lambda: entries(p), what="the tunnel's entry")
            assert entries(p)[0][0] == "200"
        finally:
            browser.close()
            p.stop()
