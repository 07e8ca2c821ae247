"""appstack-proxy forwarding against a scriptable upstream on real sockets:
header cleaning, buffering both ways, keep-alive pool, retries, errors."""
import os
import signal
import socket
import threading
import time

from proxyutil import Upstream, get, ok, raw_request, read_response, start_proxy


def test_headers_cleaned_and_forwarded(tmpdir_short, proxy_workers):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        r = raw_request(proxy.port, b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\n"
                        b"Connection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
                        b"Upgrade: websocket\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\n"
                        b"X-Forwarded-Proto: https\r\nX-Custom: kept\r\n\r\n")
        assert r.status == 200 and r.body == b"GET /a/b?x=1&y=%20"
        req = up.requests[0]
        assert req.target == "/a/b?x=1&y=%20"
        assert req.header("Host") == ["example.com"]
        assert req.header("X-Custom") == ["kept"]
        for gone in ("Connection", "X-Secret", "Keep-Alive", "TE", "Upgrade", "Proxy-Connection"):
            assert req.header(gone) == [], gone
        # Not a real_ip_from front server: its X-Forwarded-* are replaced.
        assert req.header("X-Forwarded-For") == ["127.0.0.1"]
        assert req.header("X-Forwarded-Proto") == ["http"]
        assert req.header("X-Forwarded-Host") == ["example.com"]
    finally:
        proxy.stop()
        up.close()


def test_forwarded_headers_of_a_trusted_front_are_kept(tmpdir_short):
    """Behind a load balancer listed in real_ip_from, its X-Forwarded-Proto
    and -Host are kept and X-Forwarded-For gets its address appended;
    headers it did not send are the proxy's own."""
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr], extra="real_ip_from = 10.0.0.0/8, 127.0.0.0/8\nreal_ip_from = ::1")
    try:
        raw_request(proxy.port, b"GET /a HTTP/1.1\r\nHost: internal:8080\r\nX-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n"
                    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\nConnection: close\r\n\r\n")
        raw_request(proxy.port, b"GET /b HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n\r\n")
        first, second = up.requests[0], up.requests[1]
        assert first.header("X-Forwarded-For") == ["203.0.113.9, 10.1.2.3, 127.0.0.1"]
        assert first.header("X-Forwarded-Proto") == ["https"]
        assert first.header("X-Forwarded-Host") == ["www.example.com"]
        assert first.header("Host") == ["internal:8080"]
        assert second.header("X-Forwarded-For") == ["127.0.0.1"]
        assert second.header("X-Forwarded-Proto") == ["http"]
        assert second.header("X-Forwarded-Host") == ["internal"]
    finally:
        proxy.stop()
        up.close()


def test_chunked_request_forwarded_with_length_and_large_body_spooled(tmpdir_short, proxy_workers):
    up = Upstream(lambda req: ok(str(len(req.body)).encode() + b" " + req.body[:10]))
    proxy = start_proxy(tmpdir_short, [up.addr], extra="client_body_buffer_size = 16k\nclient_max_body_size = 20m")
    try:
        r = raw_request(proxy.port, b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert r.status == 200 and r.body == b"11 hello worl"
        assert up.requests[0].header("Content-Length") == ["11"]
        assert up.requests[0].header("Transfer-Encoding") == []
        big = os.urandom(5 << 20)
        r = get(proxy.port, "/big", method="POST", body=big, timeout=30)
        assert r.status == 200 and r.body == str(len(big)).encode() + b" " + big[:10]
        assert up.requests[-1].body == big
    finally:
        proxy.stop()
        up.close()


def test_body_over_limit_is_413_without_the_upstream(tmpdir_short):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr], extra="client_max_body_size = 1k")
    try:
        r = raw_request(proxy.port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000)
        assert r.status == 413
        assert up.requests == []
    finally:
        proxy.stop()
        up.close()


def test_parser_errors(tmpdir_short):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        assert raw_request(proxy.port, b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n").status == 400
        assert raw_request(proxy.port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").status == 414
        assert raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n").status == 431
        assert raw_request(proxy.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").status == 501
        smuggle = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw_request(proxy.port, smuggle).status == 400
        assert not any(r.target == "/smuggled" for r in up.requests)
    finally:
        proxy.stop()
        up.close()


def test_chunked_and_close_delimited_responses(tmpdir_short):
    def handler(req):
        if req.target == "/chunked":
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
        def eof_body(sock):
            sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close")
            return False
        return eof_body
    up = Upstream(handler)
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        r = get(proxy.port, "/chunked")
        assert r.status == 200 and r.body == b"abcdefg"
        assert r.header("transfer-encoding") == "chunked"
        r = raw_request(proxy.port, b"GET /chunked HTTP/1.0\r\n\r\n")
        assert r.body == b"abcdefg" and r.header("transfer-encoding") is None
        r = get(proxy.port, "/eof")
        assert r.status == 200 and r.body == b"until-close"
        # Without a length from the upstream, an HTTP/1.1 client still gets
        # a framed body (its connection may stay), an HTTP/1.0 one the close.
        assert r.header("transfer-encoding") == "chunked"
        r = raw_request(proxy.port, b"GET /eof HTTP/1.0\r\n\r\n")
        assert r.body == b"until-close" and r.header("transfer-encoding") is None
        assert r.header("connection") == "close"
    finally:
        proxy.stop()
        up.close()


def test_upstream_keepalive_pool_and_client_keepalive(tmpdir_short):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s, s.makefile("rb") as f:
            for i in range(5):
                s.sendall(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                r = read_response(f)
                assert r.status == 200 and r.body == f"GET /{i}".encode()
            # Pipelined: answers in order.
            s.sendall(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3)))
            assert [read_response(f).body for _ in range(3)] == [b"GET /p0", b"GET /p1", b"GET /p2"]
        assert up.connections == 1
    finally:
        proxy.stop()
        up.close()


def test_response_buffered_so_the_upstream_is_free_before_a_slow_client(tmpdir_short):
    body = os.urandom(1 << 20) * 32      # more than the kernel's socket buffers hold
    done = threading.Event()

    def handler(req):
        def send(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            done.set()
        return send
    up = Upstream(handler)
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # The client reads nothing, yet the upstream finishes writing.
            assert done.wait(10), "the upstream was held by a client that does not read"
            with s.makefile("rb") as f:
                r = read_response(f)
        assert r.status == 200 and r.body == body
    finally:
        proxy.stop()
        up.close()


def test_upstream_down_is_502_fast(tmpdir_short):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    proxy = start_proxy(tmpdir_short, [f"127.0.0.1:{dead}"], extra="proxy_connect_timeout = 3")
    try:
        t0 = time.monotonic()
        r = get(proxy.port, "/")
        assert r.status == 502
        assert time.monotonic() - t0 < 3
    finally:
        proxy.stop()


def test_upstream_hang_is_504_at_read_timeout(tmpdir_short):
    def hang(req):
        def wait(sock):
            time.sleep(5)
            return False
        return wait
    up = Upstream(hang)
    proxy = start_proxy(tmpdir_short, [up.addr], extra="proxy_read_timeout = 1")
    try:
        t0 = time.monotonic()
        r = get(proxy.port, "/hang")
        took = time.monotonic() - t0
        assert r.status == 504
        assert 0.9 <= took < 4.5
        assert len(up.requests) == 1        # a timeout is not retried
    finally:
        proxy.stop()
        up.close()


def test_retries(tmpdir_short, proxy_workers):
    seen = {}

    def handler(req):
        # The first request on each connection of /flaky dies unanswered.
        key = (req.target, req.conn_no)
        seen[key] = seen.get(key, 0) + 1
        if req.target.startswith("/flaky") and len([k for k in seen if k[0] == req.target]) == 1:
            return None
        if req.target == "/pooled-close" and seen[key] == 2:
            return None             # a pooled connection the worker closed
        return ok(b"answered")
    up = Upstream(handler)
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        # A fresh connection dies before answering: POST is not retried...
        assert get(proxy.port, "/flaky-post", method="POST", body=b"x").status == 502
        assert len([r for r in up.requests if r.target == "/flaky-post"]) == 1
        # ...GET is.
        assert get(proxy.port, "/flaky-get").body == b"answered"
        # Reused connection closed with zero bytes: retried even for POST.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s, s.makefile("rb") as f:
            for _ in range(2):
                s.sendall(b"POST /pooled-close HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
                assert read_response(f).body == b"answered"
    finally:
        proxy.stop()
        up.close()



def test_pooled_connections_closed_at_once_do_not_use_up_the_retries(tmpdir_short):
    """A reload's old workers close their idle connections all at once. A
    request that meets several of them in the pool before the proxy has seen
    the closes goes on to a connection that answers: over a unix socket the
    failed send says that nothing reached a worker, so those attempts do not
    count against the request's retries. (Whether the proxy sees the request
    or the closes first is up to its event loop: three rounds.)"""
    n = 6
    barrier = threading.Barrier(n)

    def handler(req):
        if req.target.startswith("/fill"):
            barrier.wait(timeout=10)    # n at once: n upstream connections
        return ok(b"answered")
    up = Upstream(handler, path=os.path.join(tmpdir_short, "up.sock"))
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s, s.makefile("rb") as f:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(f).status == 200
            for _ in range(3):
                statuses = []
                fills = [threading.Thread(target=lambda i=i: statuses.append(get(proxy.port, f"/fill{i}").status))
                         for i in range(n)]
                for t in fills:
                    t.start()
                for t in fills:
                    t.join()
                assert statuses == [200] * n
                # While the proxy does not run, all n pooled connections
                # close and a request arrives.
                serving, = proxy.serving()
                os.kill(serving, signal.SIGSTOP)
                try:
                    with up.lock:
                        for c in up.conns:
                            try:
                                c.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass            # closed in an earlier round
                    s.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
                    time.sleep(0.2)
                finally:
                    os.kill(serving, signal.SIGCONT)
                r = read_response(f)
                assert (r.status, r.body) == (200, b"answered"), proxy.log_text()
    finally:
        proxy.stop()
        up.close()

def test_round_robin_and_passive_health(tmpdir_short):
    a = Upstream(lambda req: ok(b"A"))
    b = Upstream(lambda req: ok(b"B"))
    proxy = start_proxy(tmpdir_short, [a.addr, b.addr])
    try:
        bodies = [get(proxy.port, "/").body for _ in range(6)]
        assert bodies.count(b"A") == 3 and bodies.count(b"B") == 3
        b.close()
        time.sleep(0.2)
        bodies = [get(proxy.port, "/").body for _ in range(6)]
        assert bodies == [b"A"] * 6
    finally:
        proxy.stop()
        a.close()


def test_max_connections_503_fast(tmpdir_short):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr], extra="max_connections = 2")
    held = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            held.append(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")     # counted once it answers
            assert read_response(s.makefile("rb")).status == 200
        t0 = time.monotonic()
        r = get(proxy.port, "/", timeout=5)
        assert r.status == 503 and time.monotonic() - t0 < 2
        held.pop().close()
        time.sleep(0.2)
        assert get(proxy.port, "/").status == 200
    finally:
        for s in held:
            s.close()
        proxy.stop()
        up.close()


def test_client_timeouts(tmpdir_short, proxy_workers):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr], extra="client_header_timeout = 1\nclient_body_timeout = 1\n"
                        "keepalive_timeout = 1")
    try:
        for partial in (b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"):
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s, s.makefile("rb") as f:
                s.sendall(partial)
                r = read_response(f)
                assert r is None or r.status == 408
                assert f.read() == b""      # and closed
            assert time.monotonic() - t0 < 5
        assert up.requests == []
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with s.makefile("rb") as f:
                assert read_response(f).status == 200
                t0 = time.monotonic()
                assert f.read() == b""      # idle keep-alive closed
                assert time.monotonic() - t0 < 5
    finally:
        proxy.stop()
        up.close()


def test_request_line_forwarded_in_origin_form_with_a_host(tmpdir_short):
    """The upstream hop gets origin-form (no fragment, an absolute-form's
    authority as Host) and always a Host: an HTTP/1.0 request without one
    gets the address the client reached (RFC 9112 3.2, 3.2.2)."""
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        cases = [
            (b"GET http://user:pw@example.com:8080/a%20b?q=1#frag HTTP/1.1\r\nHost: other\r\n",
             "/a%20b?q=1", ["example.com:8080"]),
            (b"GET https://example.com HTTP/1.1\r\n", "/", ["example.com"]),
            (b"GET /p?x#frag HTTP/1.1\r\nHost: h\r\n", "/p?x", ["h"]),
            (b"GET /p#frag?not-query HTTP/1.1\r\nHost: h\r\n", "/p", ["h"]),
            (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n", "*", ["h"]),
            (b"GET /old HTTP/1.0\r\n", "/old", [f"127.0.0.1:{proxy.port}"]),
            (b"GET /noh HTTP/1.1\r\n", "/noh", [f"127.0.0.1:{proxy.port}"]),
            (b"QUERY /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n", "/caf\xc3\xa9", ["h"]),
            # a client cannot take the Host away through Connection
            (b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: Host, X-A\r\nX-A: 1\r\n", "/c", ["h"]),
        ]
        for head, target, host in cases:
            r = raw_request(proxy.port, head + b"Connection: close\r\n\r\n")
            req = up.requests[-1]
            assert r.status == 200, head
            assert (req.target, req.header("Host")) == (target, host), head
            assert req.header("X-A") == []
    finally:
        proxy.stop()
        up.close()


def test_errors_are_written_as_the_worker_writes_them(tmpdir_short):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        r = raw_request(proxy.port, b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (r.status, r.body) == (400, b"400 Bad Request\n")
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers["connection"] == "close" and r.headers["server"] == "appstack"
        r = raw_request(proxy.port, b"post / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (r.status, r.body) == (501, b"501 Not Implemented\n")
    finally:
        proxy.stop()
        up.close()
