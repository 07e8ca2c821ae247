"""A worker tells a trusted proxy that asks which worker holds the
connection (common/worker_ident.h): once per connection, before the app
runs, in an interim 100 Continue; nobody else sees anything of it."""
import re
import socket

from conftest import free_port
from supervisorutil import Supervisor, sup_config
from workerutil import raw

TOKEN = re.compile(rb"\r\nAppstack-Worker: [0-9a-f]{16} 1\r\n", re.I)


def test_worker_says_who_it_is_once_per_connection_and_only_when_asked(tmpdir_short):
    port = free_port()
    sup = Supervisor(sup_config(tmpdir_short, port, module="wsgiapp:application", workers=1), port)
    try:
        sup.wait_ready(1)
        ask = b"GET /pid HTTP/1.1\r\nHost: t\r\nAppstack-Worker: ?\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(ask)
            first = _read_until(s, b"\r\n\r\n", 2)
            s.sendall(ask)
            second = _read_until(s, b"\r\n\r\n", 1)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n") and TOKEN.search(first), first
        assert b"HTTP/1.1 200" in first
        assert b"100 Continue" not in second and b"Appstack-Worker" not in second, second
        # A client that does not ask sees nothing of it.
        plain = raw(port, b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 200") and b"Appstack-Worker" not in plain
        # The question is not the app's business.
        echo = raw(port, b"GET /echo HTTP/1.1\r\nHost: t\r\nAppstack-Worker: ?\r\nConnection: close\r\n\r\n")
        assert b"HTTP/1.1 200" in echo and b"HTTP_APPSTACK_WORKER" not in echo, echo
    finally:
        sup.stop()


def test_untrusted_peer_gets_no_answer(tmpdir_short):
    port = free_port()
    cfg = sup_config(tmpdir_short, port, module="wsgiapp:application", workers=1,
                     extra="forwarded_allow_ips = 10.9.9.9")
    sup = Supervisor(cfg, port)
    try:
        sup.wait_ready(1)
        out = raw(port, b"GET /pid HTTP/1.1\r\nHost: t\r\nAppstack-Worker: ?\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200") and b"Appstack-Worker" not in out, out
    finally:
        sup.stop()


def _read_until(s, sep, count):
    data = b""
    while data.count(sep) < count:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
