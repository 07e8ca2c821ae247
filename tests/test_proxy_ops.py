"""appstack-proxy operations: --check, --help/--version, HUP reload without
dropping connections, TERM finishing in-flight requests, the access log."""
import os
import signal
import socket
import subprocess
import threading
import time

from conftest import free_port, prog, wait_for
from proxyutil import ENV, Proxy, Upstream, get, ok, proxy_config, read_response, start_proxy, wait_exit


def run(*args):
    return subprocess.run([prog("appstack-proxy"), *args], capture_output=True, text=True, env=ENV, timeout=10)


def test_help_version_and_check(tmpdir_short):
    assert run("--help").returncode == 0 and "--check" in run("--help").stdout
    assert run("--version").stdout.startswith("appstack-proxy ")
    good = proxy_config(tmpdir_short, free_port(), ["unix:/tmp/nowhere.sock"],
                        locations=f"[location /static/]\nalias = {tmpdir_short}/missing/\n")
    r = run("--check", "-c", good)
    assert r.returncode == 0, r.stderr
    assert f"{good}:5: warning: alias {tmpdir_short}/missing/" in r.stderr
    bad = os.path.join(tmpdir_short, "bad.ini")
    with open(bad, "w") as f:
        f.write("[proxy]\nlisten = 127.0.0.1:1\nclient_max_body_size = lots\n\n[location /x/]\nexpires = 1d\n")
    r = run("--check", "-c", bad)
    assert r.returncode == 1
    assert f"{bad}:3: client_max_body_size" in r.stderr
    assert f"{bad}:1: [proxy] needs at least one \"upstream\"" in r.stderr
    assert f"{bad}:5: location /x/ has no alias" in r.stderr
    # Starting with the bad file is the same clear error, not a crash.
    r = subprocess.run([prog("appstack-proxy"), "-c", bad], capture_output=True, text=True, env=ENV, timeout=10)
    assert r.returncode == 1 and f"{bad}:3:" in r.stderr


def test_hup_reloads_without_dropping_connections(tmpdir_short, proxy_workers):
    a = Upstream(lambda req: ok(b"A"))
    b = Upstream(lambda req: ok(b"B"))
    d1, d2 = os.path.join(tmpdir_short, "one"), os.path.join(tmpdir_short, "two")
    for d, text in ((d1, b"one"), (d2, b"two")):
        os.makedirs(d)
        with open(os.path.join(d, "f.txt"), "wb") as f:
            f.write(text)
    port = free_port()
    cfg = proxy_config(tmpdir_short, port, [a.addr], locations=f"[location /s/]\nalias = {d1}/\n")
    proxy = Proxy(cfg, port)
    try:
        keep = socket.create_connection(("127.0.0.1", port), timeout=10)
        kf = keep.makefile("rb")
        keep.sendall(b"GET /s/f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(kf).body == b"one"
        proxy_config(tmpdir_short, port, [b.addr], locations=f"[location /s/]\nalias = {d2}/\n")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: f"reloaded {cfg}:" in proxy.log_text(), timeout=5, what="every process reloaded")
        assert get(port, "/x").body == b"B"
        assert get(port, "/s/f.txt").body == b"two"
        # The connection from before the reload still works, on the new config.
        keep.sendall(b"GET /s/f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(kf).body == b"two"
        # A broken config is refused; the running one stays.
        with open(cfg, "a") as f:
            f.write("bogus_key = 1\n")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the running configuration" in proxy.log_text(), timeout=5, what="refusal")
        assert get(port, "/x").body == b"B"
        assert proxy.proc.poll() is None
        keep.close()
    finally:
        proxy.stop()
        a.close()
        b.close()


def test_term_finishes_in_flight_requests(tmpdir_short, proxy_workers):
    def slow(req):
        time.sleep(1.0)
        return ok(b"finished")
    up = Upstream(slow)
    proxy = start_proxy(tmpdir_short, [up.addr])
    try:
        idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        idle.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        idle_f = idle.makefile("rb")
        assert read_response(idle_f).status == 200
        result = {}

        def client():
            result["r"] = get(proxy.port, "/slow")
        t = threading.Thread(target=client)
        t.start()
        wait_for(lambda: len(up.requests) == 2, timeout=5, what="request in flight")
        proxy.proc.send_signal(signal.SIGTERM)
        assert idle_f.read() == b""         # the idle keep-alive connection is closed
        t.join(10)
        assert result["r"].status == 200 and result["r"].body == b"finished"
        assert wait_exit(proxy.proc) == 0
        # No longer accepting.
        try:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        assert refused
    finally:
        proxy.stop()
        up.close()


def test_access_log_line(tmpdir_short, proxy_workers):
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr], locations=f"[location /s/]\nalias = {tmpdir_short}/\n")
    try:
        get(proxy.port, "/app/page?secret=1", {"User-Agent": "tester/1", "Referer": "http://r/"})
        get(proxy.port, "/s/none.txt")
        # Both entries: with several processes, each writes its own.
        wait_for(lambda: "/s/none.txt" in proxy.log_text() and "/app/page" in proxy.log_text(), timeout=5,
                 what="access log")
        log = proxy.log_text()
        line = next(l for l in log.splitlines() if "/app/page" in l)
        assert '"GET /app/page?secret=1 HTTP/1.1" 200' in line
        assert '"http://r/" "tester/1"' in line and line.endswith(up.addr)
        line = next(l for l in log.splitlines() if "/s/none.txt" in l)
        assert '" 404 ' in line and line.endswith(" -")
    finally:
        proxy.stop()
        up.close()
    cfg = proxy_config(tmpdir_short, free_port(), [up.addr], extra="access_log = off", name="quiet.ini")
    with open(cfg) as f:
        port = int(f.read().split("127.0.0.1:")[1].split()[0])
    quiet = Proxy(cfg, port)
    try:
        up2 = Upstream()
        get(port, "/whatever")
        time.sleep(0.2)
        assert "/whatever" not in quiet.log_text()
        up2.close()
    finally:
        quiet.stop()
