"""Prometheus metrics and /healthz of appstackd and appstack-proxy
(metrics = ADDR): a real Prometheus scrapes both and its answers about a
known load are checked against what the load generator counted; promtool
lints the text; readiness follows the generations; bad metrics addresses
are config errors."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import APPS, free_port, prog, wait_for, write_config
from proxyutil import ENV as PROXY_ENV, Proxy
from supervisorutil import ENV as SUP_ENV, Supervisor

needs_prometheus = pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("promtool"),
                                      reason="needs Debian's prometheus package")


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def stack_config(d, app_port, proxy_port, sup_metrics, proxy_metrics, workers=2, extra_app=""):
    return write_config(d, f"""
        [app]
        module = slow_app:application
        chdir = {APPS}
        {extra_app}

        [supervisor]
        listen = 127.0.0.1:{app_port}
        workers = {workers}
        timeout = 30
        graceful_timeout = 10
        control = {d}/control.sock
        metrics = 127.0.0.1:{sup_metrics}

        [proxy]
        workers = 1
        listen = 127.0.0.1:{proxy_port}
        upstream = 127.0.0.1:{app_port}
        metrics = 127.0.0.1:{proxy_metrics}
        access_log = off

        [location /static/]
        alias = {APPS}/
        """)


class Stack:
    def __init__(self, d, workers=2, extra_app="", wait=True):
        self.app_port, self.port = free_port(), free_port()
        self.sup_metrics, self.proxy_metrics = free_port(), free_port()
        self.config = stack_config(d, self.app_port, self.port, self.sup_metrics, self.proxy_metrics, workers,
                                   extra_app)
        self.sup = Supervisor(self.config, self.app_port)
        self.proxy = None
        if wait:
            self.sup.wait_ready(workers, timeout=30)
            self.start_proxy()

    def start_proxy(self):
        self.proxy = Proxy(self.config, self.port, env=PROXY_ENV)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        self.sup.stop()


@pytest.fixture
def stacks(tmpdir_short):
    made = []

    def make(**kw):
        s = Stack(tmpdir_short, **kw)
        made.append(s)
        return s
    try:
        yield make
    finally:
        for s in made:
            s.stop()


class Prometheus:
    """Debian's prometheus on loopback, scraping TARGETS every second."""

    def __init__(self, d, targets):
        self.port = free_port()
        cfg = os.path.join(d, "prometheus.yml")
        jobs = "".join(f"""
  - job_name: {job}
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ['{target}']
""" for job, target in targets.items())
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:" + jobs)
        self.log = open(os.path.join(d, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={d}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.ready, timeout=30, what="prometheus ready")

    def ready(self):
        assert self.proc.poll() is None, "prometheus exited"
        try:
            return http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    def query(self, expr, at=None):
        q = {"query": expr}
        if at is not None:
            q["time"] = f"{at:.3f}"
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(q))
        assert status == 200, body
        result = json.loads(body)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def targets_up(self):
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"]
        return len(active) >= 2 and all(t["health"] == "up" for t in active)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Load:
    """GETs of URL paced at RATE per second on a few threads; records the
    wall-clock end and duration of every request."""

    def __init__(self, url, rate, seconds, threads=4):
        self.done = []              # (end time, seconds)
        self.failed = 0
        self.lock = threading.Lock()
        self.start = time.time()
        self.end_at = self.start + seconds
        self.ts = [threading.Thread(target=self.run, args=(url, rate / threads, i / rate)) for i in range(threads)]
        for t in self.ts:
            t.start()

    def run(self, url, rate, offset):
        next_at = self.start + offset
        while next_at < self.end_at:
            time.sleep(max(0.0, next_at - time.time()))
            t0 = time.time()
            try:
                status, _ = http_get(url)
            except OSError:
                status = 0
            t1 = time.time()
            with self.lock:
                if status == 200:
                    self.done.append((t1, t1 - t0))
                else:
                    self.failed += 1
            next_at += 1 / rate

    def join(self):
        for t in self.ts:
            t.join()


def scrape(port):
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return text


def sample(text, name, **labels):
    """The value of NAME{LABELS...} in exposition TEXT (labels compared as a subset)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        n, _, lab = head.partition("{")
        if n != name:
            continue
        have = dict(kv.split("=", 1) for kv in lab.rstrip("}").split(",") if kv)
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
            found = True
    return total if found else None


@needs_prometheus
def test_prometheus_rate_and_quantile_match_the_load(stacks, tmpdir_short):
    s = stacks()
    prom = Prometheus(tmpdir_short, {"appstackd": f"127.0.0.1:{s.sup_metrics}",
                                     "proxy": f"127.0.0.1:{s.proxy_metrics}"})
    try:
        wait_for(prom.targets_up, timeout=20, what="both targets up")
        # The series exist (at 0 or 1) before the load, so rate() sees all of it.
        assert http_get(s.url("/"))[0] == 200
        time.sleep(2.5)
        load = Load(s.url("/sleep?0.03"), rate=40, seconds=8)
        load.join()
        t_end = time.time()
        assert load.failed == 0
        time.sleep(3)       # a scrape after the last request
        n = len(load.done)
        # Counters: exact, through Prometheus.
        got = prom.query('sum(appstack_proxy_requests_total{kind="upstream",status="2xx"})')
        assert got == n + 1, (got, n)
        assert prom.query("appstack_requests_total") == n + 1
        # rate() over 4 s in the middle of the load, against the requests the
        # generator saw end in that window: within one scrape interval's worth.
        at = load.start + 6
        window = [t for t, _ in load.done if at - 4 <= t < at]
        rate = prom.query('sum(rate(appstack_proxy_requests_total{kind="upstream"}[4s]))', at=at)
        sup_rate = prom.query("rate(appstack_requests_total[4s])", at=at)
        expected = len(window) / 4
        slack = expected * 0.25 + 1
        assert abs(rate - expected) <= slack, (rate, expected)
        assert abs(sup_rate - expected) <= slack, (sup_rate, expected)
        # The median from the histogram lies in the bucket of the median the
        # generator measured (the histogram's resolution), or below it: the
        # proxy's clock starts after the client's and stops before it.
        q = prom.query('histogram_quantile(0.5, sum by (le) (rate('
                       'appstack_proxy_request_duration_seconds_bucket{kind="upstream"}[12s])))', at=t_end + 1)
        durations = sorted(d for _, d in load.done)
        median = durations[len(durations) // 2]
        bounds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
        lo = max([0] + [b for b in bounds if b < median])
        hi = min(b for b in bounds if b >= median)
        below = max([0] + [b for b in bounds if b < lo])
        assert below <= q <= hi, (q, median, lo, hi)
        assert q >= 0.03    # the view sleeps 30 ms: the proxy cannot have seen less
        wait = prom.query('histogram_quantile(0.5, sum by (le) (rate('
                          'appstack_proxy_upstream_wait_seconds_bucket[12s])))', at=t_end + 1)
        assert 0.025 <= wait <= hi, (wait, hi)    # most of it is the view's 30 ms
        assert prom.query('appstack_workers{state="idle"}') == 2
    finally:
        prom.stop()


@needs_prometheus
def test_promtool_accepts_both_outputs(stacks):
    s = stacks()
    for path in ("/", "/fail", "/static/slow_app.py", "/static/missing", "/sleep?0.01"):
        http_get(s.url(path))
    # and a request the proxy refuses itself
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(4096)
    time.sleep(0.2)
    for port in (s.sup_metrics, s.proxy_metrics):
        text = scrape(port)
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    p = scrape(s.proxy_metrics)
    assert sample(p, "appstack_proxy_requests_total", kind="upstream", status="5xx") == 1
    assert sample(p, "appstack_proxy_requests_total", kind="static", status="2xx") == 1
    assert sample(p, "appstack_proxy_requests_total", kind="static", status="4xx") == 1
    assert sample(p, "appstack_proxy_requests_total", kind="proxy", status="4xx") == 1
    assert sample(p, "appstack_proxy_request_duration_seconds_count", kind="upstream") == 3
    assert sample(p, "appstack_proxy_upstream_up") == 1
    assert sample(p, "appstack_proxy_sent_bytes_total") > 0
    sup = scrape(s.sup_metrics)
    assert sample(sup, "appstack_requests_total") == 3
    assert sample(sup, "appstack_request_errors_total") == 1     # /fail
    assert sample(sup, "appstack_listen_queue", listen=f"127.0.0.1:{s.app_port}") == 0
    assert sample(sup, "appstack_workers", state="idle") == 2
    assert sample(sup, "appstack_generation") == 1
    assert sample(sup, "appstack_worker_restarts_total", cause="crash") == 0
    assert sample(sup, "appstack_worker_resident_memory_bytes", worker="1") > 1 << 20


def families(text):
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_dashboard_and_docs_name_the_exported_metrics(stacks):
    s = stacks()
    exported = families(scrape(s.sup_metrics)) | families(scrape(s.proxy_metrics))
    with open(os.path.join(os.path.dirname(APPS), "..", "examples", "grafana-dashboard.json")) as f:
        dash = json.load(f)
    used = set()
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            used |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"appstack_[a-z_]+", t["expr"])}
    assert used and used <= exported, used - exported
    with open(os.path.join(os.path.dirname(APPS), "..", "docs", "operations.md")) as f:
        ops = f.read()
    assert not [m for m in exported if f"`{m}`" not in ops], "metrics docs/operations.md does not describe"


def test_connection_gauges_and_restart_counter(stacks):
    s = stacks()
    # One idle keep-alive connection, one busy with a slow request.
    idle = socket.create_connection(("127.0.0.1", s.port))
    idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.recv(4096)
    busy = socket.create_connection(("127.0.0.1", s.port))
    busy.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        def gauges():
            p = scrape(s.proxy_metrics)
            return (sample(p, "appstack_proxy_connections", state="active") == 1 and
                    sample(p, "appstack_proxy_connections", state="idle") == 1 and
                    sample(p, "appstack_proxy_upstream_connections", state="active") == 1)
        wait_for(gauges, timeout=5, what="1 active and 1 idle connection")
        wait_for(lambda: sample(scrape(s.sup_metrics), "appstack_workers", state="busy") == 1, timeout=5,
                 what="a busy worker")
        pid = next(w["pid"] for w in s.sup.status()["workers"] if w["state"] == "idle")
        os.kill(pid, signal.SIGSEGV)
        wait_for(lambda: sample(scrape(s.sup_metrics), "appstack_worker_restarts_total", cause="crash") == 1,
                 timeout=10, what="the crash counted")
    finally:
        idle.close()
        busy.close()


def test_supervisor_readiness_follows_the_generations(stacks, tmpdir_short):
    s = stacks(extra_app="env = SLOW_IMPORT=1.5", wait=False)
    health = f"http://127.0.0.1:{s.sup_metrics}/healthz"

    def answer():
        try:
            return http_get(health, timeout=2)
        except OSError:
            return None
    first = wait_for(answer, timeout=10, what="the metrics listen")
    assert first[0] == 503 and "loading" in first[1], first      # the first generation is loading
    s.sup.wait_ready(2, timeout=30)
    assert answer()[0] == 200
    reload = subprocess.Popen([prog("supctl"), "-c", s.config, "reload"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=SUP_ENV)
    wait_for(lambda: s.sup.status()["reloading"], timeout=10, what="the reload to start")
    seen = set()
    while reload.poll() is None:
        seen.add(answer()[0])
        time.sleep(0.05)
    assert reload.returncode == 0, reload.stdout.read()
    assert seen == {200}, seen           # ready all through the reload
    assert sample(scrape(s.sup_metrics), "appstack_generation") == 2
    assert sample(scrape(s.sup_metrics), "appstack_reloads_total", result="ok") == 1
    # Stopping with a request in flight: not ready while it finishes.
    c = socket.create_connection(("127.0.0.1", s.app_port))
    c.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: any(w["state"] == "busy" for w in s.sup.status()["workers"]), timeout=5, what="busy")
    s.sup.proc.send_signal(signal.SIGTERM)
    status, text = wait_for(lambda: (lambda a: a if a and a[0] == 503 else None)(answer()), timeout=5,
                            what="503 while stopping")
    assert "stopping" in text
    assert s.sup.proc.poll() is None        # still finishing the request
    assert b"200 OK" in c.recv(4096)
    c.close()
    s.sup.proc.wait(timeout=15)


def test_proxy_readiness(stacks):
    s = stacks()
    health = f"http://127.0.0.1:{s.proxy_metrics}/healthz"
    assert http_get(health) == (200, "ready\n")
    assert http_get(f"http://127.0.0.1:{s.proxy_metrics}/nothing")[0] == 404
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"GET /sleep?1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.proxy.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: http_get(health)[0] == 503, timeout=5, what="503 once stopping")
    assert b"200 OK" in c.recv(4096)
    c.close()
    s.proxy.proc.wait(timeout=10)
    assert s.proxy.proc.returncode == 0


SUP_GOOD = """\
[app]
module = slow_app:application

[supervisor]
listen = 127.0.0.1:8000
control = {d}/control.sock
"""
PROXY_GOOD = """\
[proxy]
listen = 127.0.0.1:8080
upstream = 127.0.0.1:8000
"""
BAD = [
    ("appstackd", SUP_GOOD + "metrics = 127.0.0.1:99999\n", 7, "metrics: "),
    ("appstackd", SUP_GOOD + "metrics = nowhere\n", 7, "metrics: "),
    ("appstackd", SUP_GOOD + "metrics = 127.0.0.1:8000\n", 7, "metrics: 127.0.0.1:8000 is the app's listen address"),
    ("appstackd", SUP_GOOD + "metrics = unix:{d}/control.sock\n", 7, "is the control socket"),
    ("appstack-proxy", PROXY_GOOD + "metrics = 1.2.3:80\n", 4, "metrics: "),
    ("appstack-proxy", PROXY_GOOD + "metrics = 127.0.0.1:8080\n", 4, "is a listen address of the proxy"),
    ("appstack-proxy", PROXY_GOOD + "metrics = 127.0.0.1:8000\n", 4, "metrics: 127.0.0.1:8000 is an upstream"),
]


@pytest.mark.parametrize("program,text,line,words", BAD)
def test_bad_metrics_address_is_a_config_error(tmpdir_short, program, text, line, words):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(text.format(d=tmpdir_short))
    r = subprocess.run([prog(program), "-c", path, "--check"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, r
    assert f"{path}:{line}: " in r.stderr and words in r.stderr, r.stderr


def test_metrics_address_in_use_is_a_clear_start_error(tmpdir_short):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        path = os.path.join(tmpdir_short, "appstack.ini")
        with open(path, "w") as f:
            f.write(PROXY_GOOD.replace("8080", str(free_port())) + f"metrics = 127.0.0.1:{port}\n")
        r = subprocess.run([prog("appstack-proxy"), "-c", path], capture_output=True, text=True, timeout=20,
                           env=PROXY_ENV)
        assert r.returncode == 1
        assert f"{path}:4: metrics = 127.0.0.1:{port}: " in r.stderr, r.stderr
    finally:
        taken.close()


def test_tls_handshakes_and_http2_streams_are_counted(tmpdir_short):
    from proxyutil import Upstream, ok
    from tlsutil import CA
    ca = CA(tmpdir_short)
    cert, key = ca.issue(["localhost"], "ec")
    up = Upstream(lambda req: ok(b"hi"))
    port, mport = free_port(), free_port()
    cfg = os.path.join(tmpdir_short, "tls.ini")
    with open(cfg, "w") as f:
        f.write(f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{port} ssl\nupstream = {up.addr}\ncertificate = {cert}\n"
                f"certificate_key = {key}\nmetrics = 127.0.0.1:{mport}\n")
    proxy = Proxy(cfg, port, env=PROXY_ENV)
    try:
        for args in (["--http1.1"], ["--http2"]):
            r = subprocess.run(["curl", "-sS", "--cacert", ca.pem, *args, "--resolve", f"localhost:{port}:127.0.0.1",
                                f"https://localhost:{port}/x"], capture_output=True, text=True, timeout=20)
            assert r.stdout == "hi", r.stderr
        # (the readiness probe of Proxy() was a connection without TLS already)
        failed = sample(scrape(mport), "appstack_proxy_tls_handshakes_total", result="failed")
        with socket.create_connection(("127.0.0.1", port)) as c:    # not TLS at all
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            c.recv(4096)

        def counted():
            p = scrape(mport)
            return (sample(p, "appstack_proxy_tls_handshakes_total", result="ok") == 2 and
                    sample(p, "appstack_proxy_tls_handshakes_total", result="failed") == failed + 1 and
                    sample(p, "appstack_proxy_http2_streams_total") == 1 and
                    sample(p, "appstack_proxy_requests_total", kind="upstream", status="2xx") == 2)
        wait_for(counted, timeout=5, what="2 handshakes, 1 more failed, 1 HTTP/2 stream, 2 requests")
    finally:
        proxy.stop()
        up.close()
