"""appstack-worker as a WSGI server: PEP 3333 behaviour seen by real apps
(tests/apps/wsgiapp.py), including under wsgiref's validator."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import APPS, free_port, wait_for, write_config
from workerutil import Conn, Worker, recv_all, request, worker_config


@pytest.fixture(scope="module")
def wdir():
    d = tempfile.mkdtemp(prefix="as-w-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def app(wdir):
    port = free_port()
    w = Worker(wdir, port, worker_config(wdir, port))
    with w:
        yield w


@pytest.fixture(scope="module")
def validated(wdir):
    d = os.path.join(wdir, "validated")
    os.mkdir(d)
    port = free_port()
    w = Worker(d, port, worker_config(d, port, module="wsgiapp:validated"))
    with w:
        yield w


def echo(port, **kw):
    status, headers, body = request(port, path=kw.pop("path", "/echo"), **kw)
    assert status == 200, body
    return json.loads(body)


# ---- the validator matrix ----

MATRIX = [
    ("GET", "/echo", (), b""),
    ("GET", "/echo?a=1&b=%20x&c=%E2%82%AC", (), b""),
    ("GET", "/caf%C3%A9/%E2%82%AC?x", (), b""),
    ("GET", "/sp%20ace/a%2Fb", (), b""),
    ("HEAD", "/echo", (), b""),
    ("POST", "/echo", (("Content-Type", "application/x-www-form-urlencoded"),), b"a=1&b=2"),
    ("POST", "/echo", (), b""),
    ("PUT", "/echo", (("Content-Length", "0"),), b""),
    ("PUT", "/echo", (("Transfer-Encoding", "chunked"),), b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    ("DELETE", "/echo?id=3", (), b""),
    ("OPTIONS", "/echo", (), b""),
    ("PATCH", "/echo", (), b"x" * 100000),
    ("POST", "/lines", (), b"one\ntwo\nthree\nfour"),
    ("POST", "/readlines", (), b"a\nb\n\nc"),
    ("GET", "/gen", (), b""),
    ("GET", "/write", (), b""),
    ("GET", "/exc-info", (), b""),
    ("GET", "/status?204", (), b""),
    ("GET", "/status?304", (), b""),
    ("GET", "/status?404", (), b""),
]


@pytest.mark.parametrize("method,path,headers,body", MATRIX)
def test_validator_matrix(validated, method, path, headers, body):
    status, _, resp = request(validated.port, method, path, headers, body)
    assert status != 500, resp
    assert "AssertionError" not in validated.log()
    assert "WSGIWarning" not in validated.log()


def test_validator_keepalive_pipelining_continue(validated):
    with Conn(validated.port) as c:
        # three pipelined requests in one write
        c.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"
               b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
               b"GET /gen HTTP/1.1\r\nHost: a\r\n\r\n")
        assert [c.response()[0] for _ in range(3)] == [200, 200, 200]
        # 100-continue on the same connection
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert c._line() == b"HTTP/1.1 100 Continue"
        assert c._line() == b""
        c.send(b"body")
        status, _, resp = c.response()
        assert status == 200 and json.loads(resp)["body"] == "body"
    assert "AssertionError" not in validated.log()


# ---- environ ----

def test_environ_basics(app):
    e = echo(app.port, path="/caf%C3%A9%2Fx/%25?q=%20&r=1")["env"]
    assert e["PATH_INFO"] == "/caf\xc3\xa9/x/%"       # decoded bytes, as latin-1
    assert e["QUERY_STRING"] == "q=%20&r=1"             # raw
    assert e["RAW_URI"] == "/caf%C3%A9%2Fx/%25?q=%20&r=1"
    assert e["SCRIPT_NAME"] == ""
    assert e["REQUEST_METHOD"] == "GET"
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["SERVER_NAME"] == "localhost" and e["SERVER_PORT"] == "80"    # from Host
    assert e["REMOTE_ADDR"] == "127.0.0.1" and e["REMOTE_PORT"].isdigit()
    assert e["wsgi.url_scheme"] == "http"
    assert e["HTTP_HOST"] == "localhost"


def test_environ_headers(app):
    e = echo(app.port, headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Content-Type", "text/x"),
                                ("X_Sneaky", "1"), ("Cookie", "a=1"), ("Cookie", "b=2")],
             method="POST", body=b"xyz")["env"]
    assert e["HTTP_X_MULTI"] == "a,b"
    assert e["HTTP_COOKIE"] == "a=1; b=2"
    assert e["CONTENT_TYPE"] == "text/x" and "HTTP_CONTENT_TYPE" not in e
    assert e["CONTENT_LENGTH"] == "3" and "HTTP_CONTENT_LENGTH" not in e
    assert "HTTP_X_SNEAKY" not in e       # underscores could spoof dashes


def test_forwarded_from_trusted_peer(app):
    e = echo(app.port, headers=[("X-Forwarded-For", "10.9.8.7, 192.0.2.5"),
                                ("X-Forwarded-Proto", "https")])["env"]
    assert e["REMOTE_ADDR"] == "192.0.2.5"
    assert e["wsgi.url_scheme"] == "https"


def test_forwarded_untrusted_and_script_name(tmpdir_short):
    port = free_port()
    cfg = worker_config(tmpdir_short, port, app_extra="script_name = /mount",
                        sup_extra="forwarded_allow_ips = 10.0.0.1")
    with Worker(tmpdir_short, port, cfg) as w:
        e = echo(w.port, path="/mount/echo/x", headers=[("X-Forwarded-For", "6.6.6.6"),
                                                        ("X-Forwarded-Proto", "https"),
                                                        ("SCRIPT_NAME", "/evil")])["env"]
        assert e["REMOTE_ADDR"] == "127.0.0.1"
        assert e["wsgi.url_scheme"] == "http"
        assert e["SCRIPT_NAME"] == "/mount"
        assert e["PATH_INFO"] == "/echo/x"


def test_script_name_header_from_trusted_proxy(app):
    status, _, body = request(app.port, path="/app/echo", headers=[("SCRIPT_NAME", "/app")])
    e = json.loads(body)["env"]
    assert (e["SCRIPT_NAME"], e["PATH_INFO"]) == ("/app", "/echo")


# ---- wsgi.input ----

def test_input_readline_iteration(app):
    status, _, body = request(app.port, "POST", "/lines", body=b"first\nabcdef\ng\nh")
    got = json.loads(body)
    assert got == {"first": "first\n", "limited": "abc", "rest": ["def\n", "g\n", "h"]}


def test_input_readlines_chunked(app):
    body = b"3\r\na\nb\r\n4\r\n\nc\nd\r\n0\r\n\r\n"
    status, _, resp = request(app.port, "POST", "/readlines", [("Transfer-Encoding", "chunked")], body)
    assert json.loads(resp) == ["a\n", "b\n", "c\n", "d"]


def test_input_large_chunked_body(app):
    data = os.urandom(300000)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 7777]), data[i:i + 7777])
                      for i in range(0, len(data), 7777))
    status, _, resp = request(app.port, "POST", "/upload", [("Transfer-Encoding", "chunked")],
                              chunks + b"0\r\n\r\n")
    assert json.loads(resp)["size"] == len(data)


def test_input_read_huge_size_is_not_allocated(app):
    body = b"y" * 200000
    for headers, data in (((), body),
                          ((("Transfer-Encoding", "chunked"),), b"30d40\r\n" + body + b"\r\n0\r\n\r\n")):
        status, _, resp = request(app.port, "POST", "/read-huge", headers, data)
        assert status == 200 and json.loads(resp)["size"] == len(body)


# ---- responses ----

def test_write_callable(app):
    status, headers, body = request(app.port, path="/write")
    assert body == b"written then returned\n"
    assert headers["transfer-encoding"] == "chunked"


def test_generator_chunked_and_http10_close_delimited(app):
    status, headers, body = request(app.port, path="/gen")
    assert headers.get("transfer-encoding") == "chunked"
    assert body == b"".join(b"part %d\n" % i for i in range(5))
    with Conn(app.port) as c:
        c.send(b"GET /gen HTTP/1.0\r\n\r\n")
        status, headers, body = c.response()
        assert "transfer-encoding" not in headers and "content-length" not in headers
        assert body == b"".join(b"part %d\n" % i for i in range(5))


def test_head_and_bodiless_statuses(app):
    with Conn(app.port) as c:
        c.send(b"HEAD /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = c.response(head=True)
        assert status == 200 and int(headers["content-length"]) > 0
        for code in (204, 304):
            c.send(b"GET /status?%d HTTP/1.1\r\nHost: a\r\n\r\n" % code)
            status, headers, _ = c.response()
            assert status == code and "content-length" not in headers
            assert "transfer-encoding" not in headers
        # nothing stray was sent: the next response parses cleanly
        c.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.response()[0] == 200


def test_exc_info_replaces_status(app):
    status, _, body = request(app.port, path="/exc-info")
    assert (status, body) == (503, b"error page\n")


def test_exc_info_after_headers_reraises(app):
    with Conn(app.port) as c:
        c.send(b"GET /exc-info-late HTTP/1.1\r\nHost: a\r\n\r\n")
        data = recv_all(c.sock)
    assert data.startswith(b"HTTP/1.1 200") and b"partial" in data
    assert b"never sent" not in data and not data.endswith(b"0\r\n\r\n")
    wait_for(lambda: "late failure" in app.log(), what="the re-raised error in the log")


def test_forwarded_from_unix_socket_peer(tmpdir_short):
    sock = os.path.join(tmpdir_short, "app.sock")
    cfg = write_config(tmpdir_short, f"[app]\nmodule = wsgiapp\nchdir = {APPS}\n"
                                     f"[supervisor]\nlisten = unix:{sock}\n")
    w = Worker(tmpdir_short, 0, cfg)
    w.start(wait=False)
    try:
        wait_for(lambda: os.path.exists(sock), timeout=30, what="unix socket")
        s = socket.socket(socket.AF_UNIX)
        wait_for(lambda: s.connect_ex(sock) == 0, timeout=30, what="worker accepting")
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-For: 203.0.113.9\r\n"
                  b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
        s.close()
        env = json.loads(data.split(b"\r\n\r\n", 1)[1])["env"]
        assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"
    finally:
        w.stop()


def traceback_entry(log, needle):
    """The log text of the entry that contains NEEDLE, from its prefix line on."""
    start = log.rfind("appstack-worker[", 0, log.find(needle))
    end = log.find("\nappstack-worker[", log.find(needle))
    return log[start:end if end >= 0 else len(log)]


def test_raise_before_start_response(app):
    pid = request(app.port, path="/pid")[2]
    status, _, body = request(app.port, path="/raise-before")
    assert status == 500
    assert b"boom" not in body                          # no traceback to the client
    wait_for(lambda: "boom before start_response" in app.log(), what="traceback in the log")
    entry = traceback_entry(app.log(), "boom before start_response")
    # one entry: the traceback lines follow the single prefix line
    assert "/raise-before" in entry.splitlines()[0]
    assert "Traceback (most recent call last):" in entry
    assert "wsgiapp.py" in entry
    assert request(app.port, path="/pid")[2] == pid      # same worker still serving


def test_raise_after_headers_truncates(app):
    with Conn(app.port) as c:
        c.send(b"GET /raise-after HTTP/1.1\r\nHost: a\r\n\r\n")
        data = recv_all(c.sock)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"first part" in data
    assert not data.endswith(b"0\r\n\r\n")               # no false end of the chunked body
    with Conn(app.port) as c:
        c.send(b"GET /raise-announced HTTP/1.1\r\nHost: a\r\n\r\n")
        data = recv_all(c.sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head and body == b"short"   # closed, not completed
    assert "boom after the headers" in app.log()


@pytest.mark.parametrize("path", ["/bad-header", "/nonlatin-header", "/no-start"])
def test_invalid_responses_are_500(app, path):
    with Conn(app.port) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        data = recv_all(c.sock, timeout=5)
    assert data.startswith(b"HTTP/1.1 500")
    assert b"pwned" not in data
    assert path in app.log()


def test_close_called_when_client_disconnects(app, wdir):
    marker = os.path.join(wdir, "endless-marker")
    with Conn(app.port) as c:
        c.send(b"GET /endless?endless-marker HTTP/1.1\r\nHost: a\r\n\r\n")
        got = 0
        while got < 200000:
            got += len(c.sock.recv(65536))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    wait_for(lambda: os.path.exists(marker), timeout=10, what="close() of the iterable")
    assert request(app.port, path="/pid")[0] == 200


def test_file_wrapper_uses_sendfile(app, wdir):
    path = os.path.join(wdir, "blob")
    data = os.urandom(3 * 1024 * 1024 + 7)
    with open(path, "wb") as f:
        f.write(data)
    trace = os.path.join(wdir, "strace.out")
    st = subprocess.Popen(["strace", "-qq", "-e", "trace=sendfile", "-o", trace, "-p", str(app.proc.pid)])
    try:
        time.sleep(0.5)   # attached
        status, headers, body = request(app.port, path="/file?" + path)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(10)
    assert status == 200 and body == data
    assert headers["content-length"] == str(len(data))
    with open(trace) as f:
        assert re.search(r"sendfile\(\d+, \d+, ", f.read())


def test_logging_streams(app):
    assert request(app.port, path="/log")[2] == b"logged\n"
    wait_for(lambda: "to wsgi.errors" in app.log(), what="wsgi.errors in the log")
    log = app.log()
    assert "hello from stdout" in log
    # Run by hand, the worker's stdio is its terminal's, as in any Python
    # (under appstackd the same streams reach the journal: test_journal.py).
    assert "\nline one\nline two\n" in log
