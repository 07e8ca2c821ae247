"""[proxy] workers: several serving processes on the same sockets under one
master. A serving process killed with SIGKILL under load refuses no
connection and is replaced; HUP under load (also changing the number of
processes) fails no request; a TLS session ticket one process issued is
accepted by another, even one forked later; the metrics of all processes
are one answer; the master alone talks to systemd."""
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import free_port, prog, wait_for
from proxyutil import ENV, Notify, Proxy, Upstream, get, ok, proxy_config, read_response
from tlsutil import CA


def check(path):
    return subprocess.run([prog("appstack-proxy"), "--check", "-c", path], capture_output=True, text=True,
                          env=ENV, timeout=10)


def test_workers_option_check_and_auto(tmpdir_short):
    up = "upstream = 127.0.0.1:2\n"
    for value, words in (("0", 'workers: "0" is not auto or a whole number from 1 to 256'),
                         ("lots", 'workers: "lots" is not auto or a whole number'),
                         ("257", 'workers: "257" is not auto or a whole number from 1 to 256')):
        path = os.path.join(tmpdir_short, "bad.ini")
        with open(path, "w") as f:
            f.write(f"[proxy]\nlisten = 127.0.0.1:1\n{up}workers = {value}\n")
        r = check(path)
        assert r.returncode == 1 and f"{path}:4: {words}" in r.stderr, r.stderr
    # auto: one serving process per CPU this process may run on.
    port = free_port()
    cfg = proxy_config(tmpdir_short, port, ["127.0.0.1:1"], workers="auto")
    assert check(cfg).returncode == 0
    cpus = sorted(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus[:1])      # the proxy inherits it
    try:
        one = Proxy(cfg, port)
    finally:
        os.sched_setaffinity(0, old)
    try:
        wait_for(lambda: len(one.serving()) == 1, timeout=5, what="one serving process")
        assert "starting 1 proxy processes (workers = auto: one per CPU)" in one.log_text()
    finally:
        one.stop()
    if len(cpus) > 1:
        port = free_port()
        many = Proxy(proxy_config(tmpdir_short, port, ["127.0.0.1:1"], workers="auto", name="auto.ini"), port)
        try:
            wait_for(lambda: len(many.serving()) == len(cpus), timeout=5, what="a process per CPU")
        finally:
            many.stop()


class Load:
    """Client threads: each sends GET after GET, on a new connection every
    EVERY requests. A request on a reused connection that gets no answer
    (end of file or a reset: the server closed the idle connection as the
    request was on its way) is sent again on a new one, as browsers, curl
    and urllib3 do (RFC 9112, 9.3.1); anything else is a failure."""

    def __init__(self, port, threads=6, every=(1, 1, 1, 5, 20, 50)):
        self.port, self.stop_ev = port, threading.Event()
        self.ok, self.failed, self.refused, self.retried, self.bodies = 0, [], 0, 0, {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(every[i % len(every)],)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def one(self, sock, f, n):
        sock.sendall(f"GET /load/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(f)

    def run(self, every):
        n = 0
        while not self.stop_ev.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s, s.makefile("rb") as f:
                    for i in range(every):
                        if self.stop_ev.is_set():
                            break
                        n += 1
                        try:
                            r = self.one(s, f, n)
                        except (ConnectionResetError, BrokenPipeError):
                            if i == 0:
                                raise
                            r = None
                        if r is None and i > 0:
                            with self.lock:
                                self.retried += 1
                            break       # a reused connection closed: the next loop resends on a new one
                        assert r is not None and r.status == 200, r
                        with self.lock:
                            self.ok += 1
                            self.bodies[r.body] = self.bodies.get(r.body, 0) + 1
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
            except Exception as e:      # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failed.append(repr(e))

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)


def test_kill_9_under_load_refuses_nothing_and_is_replaced(tmpdir_short):
    up = Upstream(lambda req: ok(b"fine"))
    port = free_port()
    proxy = Proxy(proxy_config(tmpdir_short, port, [up.addr], workers=2), port)
    load = None
    try:
        wait_for(lambda: len(proxy.serving()) == 2, timeout=5, what="two serving processes")
        load = Load(port)
        time.sleep(0.7)
        victim = proxy.serving()[0]
        before = load.ok
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(proxy.serving()) == 2 and victim not in proxy.serving(), timeout=3,
                 what="the replacement")
        time.sleep(0.7)
        load.stop()
        log = proxy.log_text()
    finally:
        if load:
            load.stop()
        proxy.stop(deaths_expected=True)
        up.close()
    assert load.refused == 0
    # Only what the killed process held at that moment can fail: at most one
    # request per client thread, and never a refusal.
    assert len(load.failed) <= len(load.threads), load.failed[:5]
    assert load.ok > before + 50, (before, load.ok)
    assert f"proxy process {victim} was killed by signal 9" in log
    # Both processes (and the replacement) wrote access log lines.
    pids = {line.split("]")[0] for line in log.splitlines() if '"GET /load/' in line}
    assert len(pids) >= 2, pids


def test_reload_under_load_fails_nothing(tmpdir_short):
    a, b = Upstream(lambda req: ok(b"A")), Upstream(lambda req: ok(b"B"))
    port = free_port()
    cfg = proxy_config(tmpdir_short, port, [a.addr], workers=2)
    proxy = Proxy(cfg, port)
    load = None
    try:
        wait_for(lambda: len(proxy.serving()) == 2, timeout=5, what="two serving processes")
        load = Load(port)
        steps = [(b, 2), (a, 2), (b, 3), (a, 3), (b, 2), (a, 2)]
        for i, (upstream, workers) in enumerate(steps, 1):
            time.sleep(0.3)
            proxy_config(tmpdir_short, port, [upstream.addr], workers=workers)
            proxy.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: proxy.log_text().count(f"reloaded {cfg}:") == i, timeout=10, what=f"reload {i}")
            if workers == 3:
                wait_for(lambda: len(proxy.serving()) == 3, timeout=5, what="three processes")
        time.sleep(0.3)
        wait_for(lambda: len(proxy.serving()) == 2, timeout=40, what="back to two processes")
        load.stop()
    finally:
        if load:
            load.stop()
        proxy.stop()
        a.close()
        b.close()
    assert not load.failed and load.refused == 0, (load.refused, load.failed[:5])
    assert load.bodies.get(b"A", 0) > 20 and load.bodies.get(b"B", 0) > 20, load.bodies


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    ca = CA(str(tmp_path_factory.mktemp("ca")))
    return ca, ca.issue(["localhost"])


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_session_resumed_by_another_process(tmpdir_short, ca, version):
    ca, (cert, key) = ca
    up = Upstream(lambda req: ok(b"fine"))
    port = free_port()
    cfg = proxy_config(tmpdir_short, port, [up.addr], workers=2,
                       extra=f"certificate = {cert}\ncertificate_key = {key}\n")
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace(f"listen = 127.0.0.1:{port}", f"listen = 127.0.0.1:{port} ssl"))
    proxy = Proxy(cfg, port)
    ctx = ca.client_context()
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)

    def fetch(path, session=None):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="localhost", session=session) as t:
                t.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                assert read_response(t.makefile("rb")).status == 200
                return t.session, t.session_reused

    def served_by(path):
        wait_for(lambda: f'"GET {path} ' in proxy.log_text(), timeout=5, what="the access log line")
        line = next(l for l in proxy.log_text().splitlines() if f'"GET {path} ' in l)
        return int(line.split("[")[1].split("]")[0])

    try:
        wait_for(lambda: len(proxy.serving()) == 2, timeout=5, what="two serving processes")
        session, reused = fetch("/issue")
        assert not reused
        issuer = served_by("/issue")
        # The issuer goes; its replacement, forked later, and the other
        # process resume the session with the keys they derive themselves.
        os.kill(issuer, signal.SIGKILL)
        wait_for(lambda: len(proxy.serving()) == 2 and issuer not in proxy.serving(), timeout=3,
                 what="the replacement")
        resumers = set()
        for i in range(12):
            _, reused = fetch(f"/again/{i}", session)
            assert reused, f"connection {i} made a full handshake"
            resumers.add(served_by(f"/again/{i}"))
        assert issuer not in resumers and resumers <= set(proxy.serving())
    finally:
        proxy.stop(deaths_expected=True)
        up.close()


def scrape(port):
    r = get(port, "/metrics")
    assert r.status == 200
    samples = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_sum_every_process_and_forget_a_dead_ones_connections(tmpdir_short):
    up = Upstream(lambda req: ok(b"fine"))
    port, mport = free_port(), free_port()
    proxy = Proxy(proxy_config(tmpdir_short, port, [up.addr], workers=2, extra=f"metrics = 127.0.0.1:{mport}"),
                  port)
    held = []
    try:
        wait_for(lambda: len(proxy.serving()) == 2, timeout=5, what="two serving processes")
        for i in range(30):
            assert get(port, f"/m/{i}").status == 200
        # Keep-alive connections until both processes hold some: which idle
        # process takes a connection from the shared queue is the kernel's
        # choice, so on a busy machine one of them may take many in a row.
        def holders():
            return {l.split("[")[1].split("]")[0] for l in proxy.log_text().splitlines() if '"GET /held/' in l}
        while len(held) < 400 and (len(held) < 40 or len(holders()) < 2):
            i = len(held)
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(f"GET /held/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(s.makefile("rb")).status == 200
            held.append(s)
            if len(held) >= 40:
                wait_for(lambda: f'"GET /held/{i} ' in proxy.log_text(), timeout=5, what="access log")
        assert len(holders()) == 2, "both processes should hold connections"
        m = scrape(mport)
        assert m['appstack_proxy_requests_total{kind="upstream",method="GET",status="2xx"}'] == 30 + len(held)
        assert m['appstack_proxy_connections{state="idle"}'] == len(held)
        n_requests = 30 + len(held)
        # One process dies with its connections: its requests stay counted,
        # its connections leave the gauge.
        os.kill(proxy.serving()[0], signal.SIGKILL)
        wait_for(lambda: len(proxy.serving()) == 2, timeout=3, what="the replacement")
        for s in held:
            s.close()
        held = []
        wait_for(lambda: scrape(mport)['appstack_proxy_connections{state="idle"}'] == 0, timeout=5,
                 what="no idle connection left")
        m = scrape(mport)
        assert m['appstack_proxy_requests_total{kind="upstream",method="GET",status="2xx"}'] == n_requests
        assert m['appstack_proxy_connections{state="active"}'] <= 1      # the scrape's own, at most
    finally:
        for s in held:
            s.close()
        proxy.stop(deaths_expected=True)
        up.close()


def test_master_alone_notifies_systemd(tmpdir_short):
    up = Upstream(lambda req: ok(b"fine"))
    port = free_port()
    ns = Notify(os.path.join(tmpdir_short, "notify.sock"))
    cfg = proxy_config(tmpdir_short, port, [up.addr], workers=2)
    try:
        proxy = Proxy(cfg, port, env=dict(ENV, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="400000"))
        try:
            wait_for(lambda: "READY=1" in ns.lines(), timeout=5, what="READY=1")
            assert len(proxy.serving()) == 2        # READY=1 once both accept
            assert get(port, "/x").status == 200
            proxy.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: ns.lines().count("READY=1") == 2, timeout=5, what="READY=1 after the reload")
            wait_for(lambda: any(l.startswith("STATUS=") and "2 processes" in l for l in ns.lines()), timeout=10,
                     what="STATUS=")
            wait_for(lambda: ns.lines().count("WATCHDOG=1") >= 2, timeout=5, what="WATCHDOG=1")
        finally:
            proxy.stop()
        time.sleep(0.3)
    finally:
        ns.close()
        up.close()
    seq = [l for l in ns.lines() if l in ("READY=1", "RELOADING=1", "STOPPING=1")]
    assert seq == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], ns.lines()
    assert {pid for pid, _ in ns.got} == {proxy.proc.pid}, ns.got


def test_serving_processes_do_not_preempt_on_wakeup(tmpdir_short):
    """Serving processes run SCHED_BATCH (docs/proxy.md, "Scheduling"); the
    master keeps the policy it was started with; and a policy chosen for the
    proxy (here chrt --idle, as systemd's CPUSchedulingPolicy= would) is
    left alone in every process."""
    port = free_port()
    cfg = proxy_config(tmpdir_short, port, ["127.0.0.1:1"], workers=2)
    p = Proxy(cfg, port)
    try:
        wait_for(lambda: len(p.serving()) == 2, timeout=5, what="two serving processes")
        assert os.sched_getscheduler(p.proc.pid) == os.SCHED_OTHER
        assert {os.sched_getscheduler(pid) for pid in p.serving()} == {os.SCHED_BATCH}
    finally:
        p.stop()
    port = free_port()
    chosen = Proxy(proxy_config(tmpdir_short, port, ["127.0.0.1:1"], workers=2, name="idle.ini"), port,
                   wrap=["chrt", "--idle", "0"])
    try:
        wait_for(lambda: len(chosen.serving()) == 2, timeout=5, what="two serving processes")
        assert {os.sched_getscheduler(pid) for pid in [chosen.proc.pid, *chosen.serving()]} == {os.SCHED_IDLE}
    finally:
        chosen.stop()
