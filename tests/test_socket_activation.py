"""Sockets inherited from systemd: systemd's own systemd-socket-activate hands
appstackd a listening socket (LISTEN_FDS), matched by name or by address."""
import socket

from conftest import free_port
from supervisorutil import sup_config, supervisor, wait_http  # noqa: F401


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
