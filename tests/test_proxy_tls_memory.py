"""The memory an idle TLS keep-alive connection costs appstack-proxy, and
that it goes back when the connections go: 2,000 connections (HTTP/1.1
after one request each, HTTP/2 after the preface or after 8 requests)
held by a client in a process of its own, the serving process's RSS from /proc. bench/tls (row
"idle TLS connections") prints the 10,000-connection figures beside
nginx's; docs/proxy.md ("Memory") says where the bytes are."""
import os
import resource
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import free_port, wait_for
from proxyutil import ENV, Proxy
from tlsutil import CA
from workerutil import sanitized

HERE = os.path.dirname(os.path.abspath(__file__))
N = 2000
# KiB per idle connection, with room above what was measured (OpenSSL 3.0:
# 14.5 for HTTP/1.1, of which 13.7 are OpenSSL's own; 20.0 for HTTP/2, of
# which nghttp2's session is 5), but below what an idle connection that
# kept a TLS record buffer (16 KiB more), a read buffer, or nghttp2's
# 16 KiB frame buffer (37 KiB an HTTP/2 connection) would cost.
# h2r: after 8 requests each (25 KiB measured: HPACK tables, and malloc's
# free space the requests left); 31 if nghttp2 kept the closed streams.
LIMIT_KIB = {"h1": 16.0, "h2": 23.0, "h2r": 28.0}
# An idle HTTP/2 session gives its frame buffer's pages back after 1 s
# (proxy/h2.c, H2_IDLE_TRIM): the figure is taken after that.
SETTLE = {"h1": 0.5, "h2": 2.0, "h2r": 2.0}

pytestmark = pytest.mark.skipif(sanitized(), reason="ASan's shadow memory and quarantine are not the proxy's")


@pytest.fixture(scope="module")
def front():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with tempfile.TemporaryDirectory(prefix="as-tlsmem-", dir="/tmp") as d:
        ca = CA(d)
        cert, key = ca.issue(["localhost"], "ec")
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("hello\n")
        port = free_port()
        cfg = os.path.join(d, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"[proxy]\nlisten = 127.0.0.1:{port} ssl\nupstream = 127.0.0.1:9\n"
                    f"certificate = {cert}\ncertificate_key = {key}\n"
                    f"max_connections = {N + 100}\nkeepalive_timeout = 300\nworkers = 1\n"
                    f"\n[location = /]\nalias = {d}/index.html\n")
        p = Proxy(cfg, port, env=ENV)
        try:
            yield p
        finally:
            p.stop()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def hold(port, n, proto):
    """A client process holding N idle connections; returns it once they are open."""
    c = subprocess.Popen([sys.executable, os.path.join(HERE, "tls_idle_client.py"), str(port), str(n), proto],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = c.stdout.readline()
    assert line.split() == ["ready", str(n)], f"the client said {line!r} (exit {c.poll()})"
    return c


@pytest.mark.parametrize("proto", ["h1", "h2", "h2r"])
def test_idle_tls_connections_cost_bounded_memory_and_give_it_back(front, proto):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < N + 200:
        pytest.skip(f"descriptor limit {hard} < {N + 200}")
    [pid] = front.serving()
    hold(front.port, 50, proto).communicate("")         # the process has served TLS before the baseline
    time.sleep(1.5)
    before = rss_kib(pid)
    client = hold(front.port, N, proto)
    try:
        time.sleep(SETTLE[proto])
        held = rss_kib(pid)
    finally:
        client.communicate("")
    per_conn = (held - before) / N
    assert per_conn < LIMIT_KIB[proto], f"{per_conn:.1f} KiB per idle {proto} TLS connection ({before} -> {held} KiB)"
    # The tick gives the heap's free pages back once the crowd has gone.
    wait_for(lambda: rss_kib(pid) - before < (held - before) / 4, timeout=10,
             what=f"RSS back near {before} KiB after the connections closed (now {rss_kib(pid)}, held {held})")
