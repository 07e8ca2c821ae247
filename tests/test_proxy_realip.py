"""The client's real address through appstack-proxy with the Django
example: behind HAProxy (send-proxy-v2 and send-proxy) on a
`listen = ... proxy_protocol`, and with X-Forwarded-For from a trusted and
an untrusted sender. The access log and the app's REMOTE_ADDR and
REMOTE_PORT (from the Forwarded field the proxy adds) carry the client;
untrusted senders' PROXY headers and X-Forwarded-For are ignored.
Distinct loopback addresses (127.0.0.5, ...) stand for distinct hosts."""
import os
import re
import socket
import struct
import subprocess

import pytest

from conftest import free_port, wait_for
from djangostack import django_stack
from proxyutil import read_response


@pytest.fixture(scope="module")
def stack():
    pp_port = free_port()
    with django_stack(f"real_ip_from = 127.0.0.1\nlisten = 127.0.0.1:{pp_port} proxy_protocol\n") as st:
        st.pp_port = pp_port
        procs = []
        for name, option in (("v2", "send-proxy-v2"), ("v1", "send-proxy")):
            hport = free_port()
            cfg = os.path.join(st.tmp, f"haproxy-{name}.cfg")
            with open(cfg, "w") as f:
                f.write(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{hport}
    default_backend proxy
backend proxy
    server appstack 127.0.0.1:{pp_port} {option}
""")
            procs.append(subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            setattr(st, f"haproxy_{name}", hport)

            def up(port=hport):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False
            wait_for(up, timeout=20, what="haproxy")
        try:
            yield st
        finally:
            for p in procs:
                p.kill()
                p.wait()


def ask(port, source, extra=b"", prefix=b"", path="/edge/whoami"):
    """A request from SOURCE (an address on lo); returns (response, our port)."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    mine = s.getsockname()[1]
    s.sendall(prefix + b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + extra + b"\r\n")
    with s, s.makefile("rb") as f:
        return read_response(f), mine


def fields(r):
    return r.body.decode().strip().split(" | ")


def logged(st, addr):
    return re.search(r"^appstack-proxy\[\d+\]: " + re.escape(addr) + r" - - .*\"GET /edge/whoami HTTP/1.1\" 200 ",
                     st.log_text(), re.M)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_behind_haproxy_with_the_proxy_protocol(stack, version):
    r, mine = ask(getattr(stack, f"haproxy_{version}"), "127.0.0.5")
    assert r.status == 200
    addr, port, xff, fwd = fields(r)
    assert (addr, port) == ("127.0.0.5", str(mine))
    assert xff == "127.0.0.5" and fwd == f'for="127.0.0.5:{mine}";proto=http'
    wait_for(lambda: logged(stack, "127.0.0.5"), what="an access entry with the client's address")


def test_untrusted_proxy_protocol_sender_is_ignored(stack):
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n"
    r, mine = ask(stack.pp_port, "127.0.0.7", prefix=header)
    assert r.status == 200 and fields(r)[:2] == ["127.0.0.7", str(mine)]
    v2 = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", 12) + bytes([203, 0, 113, 9, 127, 0, 0, 1])
          + struct.pack("!HH", 5555, 80))
    r, mine = ask(stack.pp_port, "127.0.0.7", prefix=v2)
    assert fields(r)[:2] == ["127.0.0.7", str(mine)]
    wait_for(lambda: logged(stack, "127.0.0.7"), what="the sender's own address in the log")
    assert "203.0.113.9" not in stack.log_text()


def test_a_trusted_sender_direct_with_a_v1_header(stack):
    r, _ = ask(stack.pp_port, "127.0.0.1", prefix=b"PROXY TCP6 2001:db8::7 ::1 4242 443\r\n")
    assert fields(r)[:3] == ["2001:db8::7", "4242", "2001:db8::7"]
    r, mine = ask(stack.pp_port, "127.0.0.1", prefix=b"PROXY UNKNOWN\r\n")
    assert fields(r)[:2] == ["127.0.0.1", str(mine)]


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.4\r\n", b"PROXY " + b"x" * 200,
                                     b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00"])
def test_a_proxy_protocol_listen_without_a_valid_header_closes(stack, garbage):
    s = socket.create_connection(("127.0.0.1", stack.pp_port), timeout=10)
    s.sendall(garbage + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    with s:
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""           # closed with the client's bytes unread
        assert got == b""       # no HTTP answer: the request was never read


def test_x_forwarded_for_from_a_trusted_and_an_untrusted_sender(stack):
    r, _ = ask(stack.port, "127.0.0.1", b"X-Forwarded-For: 198.51.100.2, 203.0.113.7\r\n")
    addr, port, xff, fwd = fields(r)
    assert (addr, port) == ("203.0.113.7", "")
    assert xff == "198.51.100.2, 203.0.113.7, 127.0.0.1" and fwd == 'for="203.0.113.7";proto=http'
    wait_for(lambda: logged(stack, "203.0.113.7"), what="the forwarded client in the log")
    r, mine = ask(stack.port, "127.0.0.6", b"X-Forwarded-For: 203.0.113.8\r\nForwarded: for=\"6.6.6.6:1\"\r\n")
    addr, port, xff, fwd = fields(r)
    assert (addr, port, xff) == ("127.0.0.6", str(mine), "127.0.0.6")
    assert fwd == f'for="127.0.0.6:{mine}";proto=http'
    wait_for(lambda: logged(stack, "127.0.0.6"), what="the untrusted sender in the log")
    assert "203.0.113.8" not in stack.log_text()
