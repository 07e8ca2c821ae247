"""HTTP/2 through appstack-proxy with real clients: nghttp and h2load
(nghttp2-client) over TLS with ALPN, python3-h2 over h2c prior knowledge:
many streams on one connection, static files and forwarded requests, large
uploads with and without content-length, a streamed response, request
trailers, and the same statuses as HTTP/1.1 for bad requests."""
import hashlib
import os
import re
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import free_port
from h2util import Client
from proxyutil import Proxy, Upstream, ok, raw_request
from tlsutil import CA


def app(req):
    if req.target.startswith("/stream"):
        def chunks(sock):
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(5):
                sock.sendall(f"6\r\npart {i}\r\n".encode())
                time.sleep(0.05)
            sock.sendall(b"0\r\n\r\n")
        return chunks
    body = (f"{req.method} {req.target} {len(req.body)} {hashlib.sha256(req.body).hexdigest()} "
            f"{','.join(v for k, v in req.headers if k.lower() == 'x-forwarded-proto')}").encode()
    return ok(body)


@pytest.fixture(scope="module")
def h2proxy():
    with tempfile.TemporaryDirectory(prefix="as-h2-", dir="/tmp") as d:
        ca = CA(d)
        cert, key = ca.issue(["localhost"], "ec")
        static = os.path.join(d, "static")
        os.makedirs(static)
        files = {"small.txt": b"small file\n", "1k.bin": os.urandom(1024), "big.bin": os.urandom(700_000)}
        for name, data in files.items():
            with open(os.path.join(static, name), "wb") as f:
                f.write(data)
        up = Upstream(app)
        tls_port, h2c_port, plain_port = free_port(), free_port(), free_port()
        cfg = os.path.join(d, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{tls_port} ssl\nlisten = 127.0.0.1:{h2c_port} http2\n"
                    f"listen = 127.0.0.1:{plain_port}\nupstream = {up.addr}\ncertificate = {cert}\n"
                    f"certificate_key = {key}\nclient_max_body_size = 5m\n\n"
                    f"[location /static/]\nalias = {static}/\n")
        proxy = Proxy(cfg, tls_port)
        proxy.ca, proxy.files, proxy.up = ca, files, up
        proxy.tls_port, proxy.h2c_port, proxy.plain_port = tls_port, h2c_port, plain_port
        try:
            yield proxy
        finally:
            proxy.stop()
            up.close()


def test_nghttp_many_streams_on_one_connection(h2proxy):
    urls = [f"https://localhost:{h2proxy.tls_port}/static/1k.bin?{i}" for i in range(20)] + \
           [f"https://localhost:{h2proxy.tls_port}/app/{i}" for i in range(30)] + \
           [f"https://localhost:{h2proxy.tls_port}/static/big.bin"]
    r = subprocess.run(["nghttp", "-n", "-s", "--no-verify-peer", *urls], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, SSL_CERT_FILE=h2proxy.ca.pem))
    assert r.returncode == 0, r.stderr
    codes = re.findall(r"^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d{3})\s", r.stdout, re.M)
    assert codes == ["200"] * len(urls), r.stdout
    out = subprocess.run(["nghttp", "-v", f"https://localhost:{h2proxy.tls_port}/static/small.txt"],
                         capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, SSL_CERT_FILE=h2proxy.ca.pem)).stdout
    assert "The negotiated protocol: h2" in out and "small file" in out


def test_h2load_static_and_forwarded_with_100_streams(h2proxy):
    for path, n in (("/static/1k.bin", 5000), ("/app/x", 500)):
        r = subprocess.run(["h2load", "-n", str(n), "-c", "2", "-m", "100",
                            f"https://localhost:{h2proxy.tls_port}{path}"],
                           capture_output=True, text=True, timeout=120)
        assert f"requests: {n} total, {n} started, {n} done, {n} succeeded, 0 failed" in r.stdout, r.stdout
        assert f"status codes: {n} 2xx" in r.stdout, r.stdout
    r = subprocess.run(["h2load", "-n", "500", "-c", "2", "-m", "50", f"http://127.0.0.1:{h2proxy.h2c_port}/app/c"],
                       capture_output=True, text=True, timeout=120)
    assert "500 succeeded, 0 failed" in r.stdout, r.stdout


def test_curl_alpn_and_h2c(h2proxy):
    out = subprocess.run(["curl", "-sS", "--http2", "--cacert", h2proxy.ca.pem, "-w", " %{http_version}",
                          f"https://localhost:{h2proxy.tls_port}/app/a"], capture_output=True, text=True,
                         timeout=20).stdout
    assert out.startswith("GET /app/a 0 ") and out.endswith(" https 2"), out
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-w", " %{http_version}",
                          f"http://127.0.0.1:{h2proxy.h2c_port}/app/b"], capture_output=True, text=True,
                         timeout=20).stdout
    assert out.endswith(" http 2"), out
    # The same listen still serves HTTP/1.1; one without "http2" never speaks HTTP/2.
    assert raw_request(h2proxy.h2c_port, b"GET /app/c HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
    r = raw_request(h2proxy.plain_port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert r is None or r.status >= 400


def test_uploads_with_and_without_length_streaming_and_trailers(h2proxy):
    c = Client(h2proxy.h2c_port)
    try:
        body = os.urandom(3 << 20)
        digest = hashlib.sha256(body).hexdigest()
        status, _, out = c.get("/up", method="POST", body=body, headers=[("content-length", str(len(body)))])
        assert status == 200 and out.decode().split()[2:4] == [str(len(body)), digest]
        status, _, out = c.get("/up", method="POST", body=body)         # no content-length
        assert status == 200 and out.decode().split()[2:4] == [str(len(body)), digest]
        # Trailers after the body are read and dropped; the body arrives whole.
        status, _, out = c.get("/up", method="POST", body=b"abc", trailers=[("x-checksum", "1")])
        assert status == 200 and out.decode().split()[2] == "3"
        assert not any(k.lower() == "x-checksum" for k, _ in h2proxy.up.requests[-1].headers)
        status, _, out = c.get("/stream")
        assert status == 200 and out == b"".join(f"part {i}".encode() for i in range(5))
        status, headers, out = c.get("/static/big.bin")
        assert status == 200 and out == h2proxy.files["big.bin"] and headers["content-length"] == "700000"
        status, headers, out = c.get("/static/small.txt", method="HEAD")
        assert status == 200 and out == b"" and headers["content-length"] == "11"
    finally:
        c.close()


def test_a_session_serves_again_after_idle_gave_its_pages_back(h2proxy):
    """After 1 s idle a session gives its frame buffer's and empty stream
    table's pages back (proxy/h2_mem.c); what it sends next is whole."""
    c = Client(h2proxy.h2c_port)
    try:
        cookie = [("cookie", "a=" + "x" * 3000), ("cookie", "b=2"), ("x-long", "y" * 5000)]
        for rnd in range(3):
            status, headers, out = c.get(f"/app/{rnd}", headers=cookie)
            assert status == 200 and out.decode().startswith(f"GET /app/{rnd} 0 "), out
            assert h2proxy.up.requests[-1].header("cookie") == ["a=" + "x" * 3000 + "; b=2"]
            status, headers, out = c.get("/static/big.bin")
            assert status == 200 and out == h2proxy.files["big.bin"]
            status, headers, out = c.get("/static/small.txt")
            assert status == 200 and out == b"small file\n" and headers["content-length"] == "11"
            time.sleep(1.5)
    finally:
        c.close()


def h1_status(port, head):
    r = raw_request(port, head)
    return r.status


def test_bad_requests_get_the_statuses_of_http11(h2proxy):
    """The same request over HTTP/1.1 and HTTP/2 gets the same status."""
    cases = [
        ("/" + "a" * 9000, [], None, 414),
        ("/x", [(f"x-h{i}", "v") for i in range(120)], None, 431),
        ("/x", [("x-big", "v" * 9000)], None, 431),
        ("/up", [("content-length", str(6 << 20))], b"", 413),
        ("/static/%zz", [], None, 400),
        ("/static/missing", [], None, 404),
    ]
    c = Client(h2proxy.h2c_port)
    try:
        for path, headers, body, want in cases:
            method = "POST" if body is not None else "GET"
            status, _, _ = c.get(path, method=method, headers=headers, body=body or None,
                                 end=body is None or body != b"")
            head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n" + \
                   "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
            assert status == want, (path[:40], status)
            assert h1_status(h2proxy.plain_port, head.encode()) == want, path[:40]
        # A body without content-length over the limit: 413 as it crosses it.
        status, _, _ = c.get("/up", method="POST", body=os.urandom(6 << 20))
        assert status == 413
        # The connection still serves.
        assert c.get("/static/small.txt")[0] == 200
    finally:
        c.close()


def test_access_log_says_http2(h2proxy):
    Client(h2proxy.h2c_port).get("/app/logged")
    time.sleep(0.2)
    assert re.search(r'"GET /app/logged HTTP/2\.0" 200 ', h2proxy.log_text())
