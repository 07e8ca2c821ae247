"""appstack-worker's HTTP/1.1: keep-alive rules, pipelining, 100-continue,
chunked bodies, limits, and strictness against malformed and smuggling
requests (each answered, connection closed, worker unharmed)."""
import json
import shutil
import tempfile
import time

import pytest

from conftest import free_port
from workerutil import Conn, Worker, is_closed, request, status_of, worker_config


@pytest.fixture(scope="module")
def app():
    d = tempfile.mkdtemp(prefix="as-h-", dir="/tmp")
    port = free_port()
    w = Worker(d, port, worker_config(d, port, sup_extra="keepalive = 2"))
    with w:
        yield w
    shutil.rmtree(d, ignore_errors=True)


def worker_pid(port):
    return int(request(port, path="/pid")[2])


BAD = [
    ("cl-and-te", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("duplicate-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl-list", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("bad-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello", 400),
    ("negative-cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("obs-fold", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: one\r\n  two\r\n\r\n", 400),
    ("bare-cr", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: o\rne\r\n\r\n", 400),
    ("bare-lf-in-value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: \x00x\r\n\r\n", 400),
    ("space-before-colon", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A : x\r\n\r\n", 400),
    ("bad-header-name", b"GET /echo HTTP/1.1\r\nHost: a\r\nBad(Name): x\r\n\r\n", 400),
    ("bad-method", b"G(T /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad-chunk-size", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffffffff\r\nhi\r\n0\r\n\r\n", 400),
    ("te-not-chunked-last", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", None),
    ("te-gzip", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 50 + b"\r\n\r\n", 400),
    ("no-version", b"GET /echo\r\n\r\n", 400),
    ("uri-too-long", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("header-too-large", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ("too-many-headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
]


@pytest.mark.parametrize("name,data,expected", BAD, ids=[b[0] for b in BAD])
def test_malformed_request(app, name, data, expected):
    pid = worker_pid(app.port)
    with Conn(app.port) as c:
        c.send(data)
        answer = b""
        c.sock.settimeout(5)
        try:
            while True:
                got = c.sock.recv(65536)
                if not got:
                    break
                answer += got
        except (ConnectionResetError, TimeoutError):
            pass
        status = status_of(answer)
        if expected is None:
            assert status is not None and 400 <= status < 600 and status != 500
        else:
            assert status == expected, answer[:300]
        assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]
        assert is_closed(c.sock)
    assert app.alive() and worker_pid(app.port) == pid


def test_keepalive_http11_and_http10(app):
    with Conn(app.port) as c:
        for _ in range(3):
            c.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
            status, headers, _ = c.response()
            assert status == 200 and "connection" not in headers
        c.send(b"GET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, _ = c.response()
        assert headers["connection"] == "close"
        assert c.closed()
    with Conn(app.port) as c:
        c.send(b"GET /pid HTTP/1.0\r\n\r\n")
        c.response()
        assert c.closed()
    with Conn(app.port) as c:
        for _ in range(2):
            c.send(b"GET /pid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = c.response()
            assert headers["connection"].lower() == "keep-alive"
        assert not c.closed(timeout=0.3)


def test_pipelining_with_bodies(app):
    reqs = (b"POST /echo?1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\none"
            b"POST /echo?2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
            b"GET /echo?3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /pid HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nunread-bod"
            b"GET /echo?5 HTTP/1.1\r\nHost: a\r\n\r\n")
    with Conn(app.port) as c:
        c.send(reqs)
        got = [c.response() for _ in range(5)]
    assert [s for s, _, _ in got] == [200] * 5
    bodies = [json.loads(b) for _, _, b in (got[0], got[1], got[2], got[4])]
    assert [(b["env"]["QUERY_STRING"], b["body"]) for b in bodies] == [
        ("1", "one"), ("2", "two"), ("3", ""), ("5", "")]


def test_pipelining_byte_by_byte(app):
    data = b"GET /echo?a HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo?b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"
    with Conn(app.port) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
        first, second = c.response(), c.response()
    assert json.loads(first[2])["env"]["QUERY_STRING"] == "a"
    assert json.loads(second[2])["body"] == "ok"


def test_expect_continue(app):
    with Conn(app.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert c._line() == b"HTTP/1.1 100 Continue" and c._line() == b""
        c.send(b"hello")
        assert json.loads(c.response()[2])["body"] == "hello"
    # the app never reads the body: no 100, and the connection closes after
    with Conn(app.port) as c:
        c.send(b"POST /pid HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        status, headers, _ = c.response()
        assert status == 200 and headers["connection"] == "close"
        assert c.closed()


def test_idle_keepalive_timeout_and_no_pinning(app):
    idle = Conn(app.port)
    idle.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
    idle.response()
    half = Conn(app.port)
    half.send(b"GET /pid HTTP/1.1\r\nHost")    # a stalled header section
    try:
        # one worker, two idle connections: others are still served at once
        t0 = time.monotonic()
        assert request(app.port, path="/pid")[0] == 200
        assert time.monotonic() - t0 < 1.5
        assert idle.closed(timeout=8)       # keepalive = 2
        assert half.closed(timeout=8)
    finally:
        idle.close()
        half.close()


def test_large_headers_within_limits(app):
    status, _, body = request(app.port, path="/echo", headers=[("X-Big", "v" * 8000)])
    assert status == 200 and json.loads(body)["env"]["HTTP_X_BIG"] == "v" * 8000


def test_keepalive_zero_disables_keepalive(tmpdir_short):
    port = free_port()
    with Worker(tmpdir_short, port, worker_config(tmpdir_short, port, sup_extra="keepalive = 0")):
        with Conn(port) as c:
            c.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
            status, headers, _ = c.response()
            assert status == 200 and headers["connection"] == "close"
            assert c.closed()


# What the app sees of the request line (docs/security.md, "HTTP/1.1
# conformance"): (request line and fields, expected environ items).
REQUEST_LINES = [
    ("absolute-form", b"GET http://u:p@example.com:8080/a%20b?q=1#f HTTP/1.1\r\nHost: other\r\n",
     {"REQUEST_METHOD": "GET", "PATH_INFO": "/a b", "QUERY_STRING": "q=1", "HTTP_HOST": "example.com:8080",
      "RAW_URI": "http://u:p@example.com:8080/a%20b?q=1#f", "wsgi.url_scheme": "http"}),
    ("https-absolute-form", b"GET https://example.com HTTP/1.0\r\n",
     {"PATH_INFO": "/", "QUERY_STRING": "", "HTTP_HOST": "example.com", "SERVER_PROTOCOL": "HTTP/1.0",
      "wsgi.url_scheme": "http"}),
    ("fragment", b"GET /a?x=1#frag?y HTTP/1.1\r\nHost: h\r\n", {"PATH_INFO": "/a", "QUERY_STRING": "x=1"}),
    ("obs-text", b"GET /caf\xc3\xa9%20x?\xff HTTP/1.1\r\nHost: h\r\n",
     {"PATH_INFO": "/caf\xc3\xa9 x", "QUERY_STRING": "\xff"}),
    ("query-method", b"QUERY /search HTTP/1.1\r\nHost: h\r\n", {"REQUEST_METHOD": "QUERY"}),
    ("webdav-method", b"PROPFIND /dav/ HTTP/1.1\r\nHost: h\r\n", {"REQUEST_METHOD": "PROPFIND"}),
    ("http-1.2", b"GET /v HTTP/1.2\r\nHost: h\r\n", {"SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/v"}),
    ("same-content-type-twice", b"GET / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n",
     {"CONTENT_TYPE": "a/b"}),
]


@pytest.mark.parametrize("name,head,expected", REQUEST_LINES, ids=[r[0] for r in REQUEST_LINES])
def test_request_line_in_environ(app, name, head, expected):
    with Conn(app.port) as c:
        c.send(head + b"Connection: close\r\n\r\n")
        status, _, body = c.response()
    env = json.loads(body)["env"]
    assert status == 200
    assert {k: env.get(k) for k in expected} == expected
