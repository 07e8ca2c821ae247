"""The environ table: for requests over IPv4, IPv6 and a unix socket, with
HTTP/1.0 and 1.1, with and without Host, the app sees what gunicorn (run
here side by side, Debian's) gives it, except where appstack chooses
better (docs/deploy.md, "Moving from gunicorn"):
  - SERVER_NAME/SERVER_PORT come from Host whenever there is one (PEP 3333,
    RFC 3875); gunicorn uses the bound address on TCP, and splits an IPv6
    Host at its first colon;
  - an IPv6 listening address is "[::1]", as in a URL;
  - on a unix socket without Host: "localhost" and "80"; REMOTE_PORT is
    "" (gunicorn leaves it out);
  - forwarded headers are believed from the proxy only, and then
    X-Forwarded-For gives REMOTE_ADDR.
Also: a local process that is not the proxy cannot set REMOTE_ADDR or the
scheme, over TCP or the unix socket."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from conftest import APPS, free_port, wait_for, write_config
from proxyutil import Proxy, proxy_config
from workerutil import Worker

REQUESTS = {
    "1.0-nohost": b"GET /a?b=1 HTTP/1.0\r\n\r\n",
    "1.0-host": b"GET /a HTTP/1.0\r\nHost: example.com\r\n\r\n",
    "1.1-hostport": b"GET /p/q?x=%20 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
    "1.1-v6host": b"GET /a HTTP/1.1\r\nHost: [2001:db8::1]:81\r\nConnection: close\r\n\r\n",
    "1.1-xf": (b"POST /f HTTP/1.1\r\nHost: h.example\r\nX-Forwarded-Proto: https\r\n"
               b"X-Forwarded-For: 203.0.113.7\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
}
SAME = ("REQUEST_METHOD", "SERVER_PROTOCOL", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "RAW_URI", "HTTP_HOST")


def ask(addr, data):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(addr)
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], out
    return json.loads(body)


@pytest.fixture(scope="module")
def servers():
    d = tempfile.mkdtemp(prefix="as-env-", dir="/tmp")
    os.chmod(d, 0o755)     # the unprivileged client must reach the unix socket
    p4, p6, g4, g6 = free_port(), free_port(), free_port(), free_port()
    sock, gsock = os.path.join(d, "a.sock"), os.path.join(d, "g.sock")
    cfg = write_config(d, f"""
        [app]
        module = environ_app
        chdir = {APPS}

        [supervisor]
        listen = 127.0.0.1:{p4}
        listen = [::1]:{p6}
        listen = unix:{sock}
        """)
    w = Worker(d, p4, cfg)
    g = subprocess.Popen([shutil.which("gunicorn") or "gunicorn", "-b", f"127.0.0.1:{g4}", "-b", f"[::1]:{g6}",
                          "-b", f"unix:{gsock}", "--chdir", APPS, "-w", "1", "environ_app:application"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=APPS))
    try:
        w.start()
        wait_for(lambda: os.path.exists(gsock) and os.path.exists(sock), timeout=30, what="both servers")
        yield d, {"v4": ("127.0.0.1", p4), "v6": ("::1", p6), "unix": sock}, \
            {"v4": ("127.0.0.1", g4), "v6": ("::1", g6), "unix": gsock}, sock, w
    finally:
        g.send_signal(signal.SIGTERM)
        g.wait(timeout=30)
        w.stop()
        shutil.rmtree(d, ignore_errors=True)


def expected_ours(kind, case, our_port, theirs):
    """Our value where we choose differently from gunicorn, else theirs."""
    e = dict(theirs)
    host = {"1.0-host": ("example.com", "80"), "1.1-hostport": ("example.com", "8080"),
            "1.1-v6host": ("[2001:db8::1]", "81"), "1.1-xf": ("h.example", "80")}.get(case)
    if host:
        e["SERVER_NAME"], e["SERVER_PORT"] = host
    elif kind in ("v4", "v6"):
        e["SERVER_PORT"] = str(our_port)
        if kind == "v6":
            e["SERVER_NAME"] = "[::1]"
    else:
        e["SERVER_NAME"], e["SERVER_PORT"] = "localhost", "80"
    if kind == "unix":
        e["REMOTE_PORT"] = ""
    if case == "1.1-xf":
        # Root is trusted as the proxy (docs/security.md); gunicorn trusts
        # loopback and, here, its unix socket, for the scheme only.
        e["wsgi.url_scheme"] = "https"
        e["SERVER_PORT"] = "443"
        e["REMOTE_ADDR"], e["REMOTE_PORT"] = "203.0.113.7", ""
    return e


@pytest.mark.parametrize("kind", ["v4", "v6", "unix"])
@pytest.mark.parametrize("case", list(REQUESTS))
def test_environ_against_gunicorn(servers, kind, case):
    _, ours_at, theirs_at, _, _ = servers
    ours, theirs = ask(ours_at[kind], REQUESTS[case]), ask(theirs_at[kind], REQUESTS[case])
    for k in SAME:
        assert ours[k] == theirs[k], (k, ours[k], theirs[k])
    want = expected_ours(kind, case, None if kind == "unix" else ours_at[kind][1], theirs)
    if kind != "unix" and case != "1.1-xf":
        assert ours["REMOTE_PORT"].isdigit()
        want["REMOTE_PORT"] = ours["REMOTE_PORT"]   # an ephemeral port either way
    assert ours == want, (ours, theirs)


def test_environ_through_the_proxy(servers, tmp_path):
    d, ours_at, _, sock, _ = servers
    port = free_port()
    proxy = Proxy(proxy_config(str(tmp_path), port, [f"unix:{sock}"]), port)
    try:
        e = ask(("127.0.0.1", port), REQUESTS["1.1-hostport"])
        assert (e["SERVER_NAME"], e["SERVER_PORT"], e["HTTP_HOST"]) == ("example.com", "8080", "example.com:8080")
        assert e["REMOTE_ADDR"] == "127.0.0.1" and e["wsgi.url_scheme"] == "http"
        # The client's X-Forwarded-* are not the proxy's to pass on.
        e = ask(("127.0.0.1", port), REQUESTS["1.1-xf"])
        assert e["REMOTE_ADDR"] == "127.0.0.1" and e["wsgi.url_scheme"] == "http" and e["SERVER_PORT"] == "80"
        e = ask(("127.0.0.1", port), REQUESTS["1.1-v6host"])
        assert (e["SERVER_NAME"], e["SERVER_PORT"]) == ("[2001:db8::1]", "81")
    finally:
        proxy.stop()


CLIENT = r"""
import json, socket, sys
addr = sys.argv[1]
fam = socket.AF_UNIX if addr.startswith("/") else socket.AF_INET
s = socket.socket(fam)
s.connect(addr if fam == socket.AF_UNIX else ("127.0.0.1", int(addr)))
s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n")
out = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    out += c
print(out.partition(b"\r\n\r\n")[2].decode())
"""


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_other_local_users_cannot_set_remote_addr(servers, via):
    _, ours_at, _, sock, _ = servers
    addr = sock if via == "unix" else str(ours_at["v4"][1])
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", CLIENT,
                        addr], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["REMOTE_ADDR"] != "6.6.6.6" and e["wsgi.url_scheme"] == "http", e
