"""Sockets inherited from systemd: systemd's own systemd-socket-activate hands
appstackd a listening socket (LISTEN_FDS), matched by name or by address."""
import os
import shutil
import socket

import pytest

from conftest import free_port
from proxyutil import Proxy, Upstream, ok, raw_request, read_response
from supervisorutil import sup_config, supervisor, wait_http  # noqa: F401
from tlsutil import CA


def activate(port, name="app"):
    # It starts the command on the first connection, like a .socket unit.
    return ("systemd-socket-activate", "-l", f"127.0.0.1:{port}", f"--fdname={name}")


def listens(s):
    return {x["address"]: x["inherited"] for x in s.status()["listen"]}


def test_inherited_by_name(supervisor, tmpdir_short, port):
    # listen= names another port: the socket systemd named "app" is used,
    # nothing is bound on the configured address.
    other = free_port()
    s = supervisor(config=sup_config(tmpdir_short, other, workers=2), argv_prefix=activate(port), wait=False)
    wait_http(port)     # the first request starts appstackd and is served
    s.wait_ready(2)
    assert listens(s) == {f"127.0.0.1:{other}": True}
    with socket.socket() as c:
        assert c.connect_ex(("127.0.0.1", other)) != 0


def test_inherited_by_address(supervisor, tmpdir_short, port):
    s = supervisor(config=sup_config(tmpdir_short, port, workers=2), argv_prefix=activate(port, "web"), wait=False)
    wait_http(port)
    s.wait_ready(2)
    assert listens(s) == {f"127.0.0.1:{port}": True}


def test_unclaimed_inherited_socket_is_served_too(supervisor, tmpdir_short, port):
    bound = free_port()
    s = supervisor(config=sup_config(tmpdir_short, bound, workers=1), argv_prefix=activate(port, "extra"),
                   wait=False)
    wait_http(port)
    wait_http(bound)
    assert listens(s) == {f"127.0.0.1:{bound}": False, f"127.0.0.1:{port}": True}


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"), reason="needs systemd-socket-activate")
def test_one_socket_unit_with_80_and_443_named_alike(tmpdir_short):
    """A socket unit with two ListenStream= (80 and 443, deploy.md's HTTPS
    setup) gives both its FileDescriptorName=http; passed 443 first, each
    of the proxy's listens still takes the socket of its own address."""
    plain, tls = free_port(), free_port()
    ca = CA(tmpdir_short)
    cert, key = ca.issue(["localhost"])
    up = Upstream(lambda req: ok(b"app"))
    cfg = os.path.join(tmpdir_short, "units.ini")
    with open(cfg, "w") as f:
        f.write(f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{plain}\nlisten = 127.0.0.1:{tls} ssl\n"
                f"upstream = {up.addr}\ncertificate = {cert}\ncertificate_key = {key}\n")
    wrap = ["systemd-socket-activate", "-l", f"127.0.0.1:{tls}", "-l", f"127.0.0.1:{plain}", "--fdname=http:http"]
    proxy = Proxy(cfg, plain, wrap=wrap)
    try:
        assert raw_request(plain, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").body == b"app"
        with socket.create_connection(("127.0.0.1", tls), timeout=5) as s:
            with ca.client_context().wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert read_response(t.makefile("rb")).body == b"app"
        assert proxy.log_text().count("(from systemd)") == 2
    finally:
        proxy.stop()
        up.close()
