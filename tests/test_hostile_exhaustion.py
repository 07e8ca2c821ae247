"""Resource exhaustion, small enough for make check (bench/hostile runs the
full sizes and prints figures): idle connections, slowloris, an endless
chunked upload, thousands of pipelined requests, a header section with
100,000 fields, running out of descriptors. Each time the proxy and the
worker keep their memory bounded, keep serving other clients and do not
write a log line per hostile event."""
import os
import resource
import socket
import threading
import time

import pytest

from hostileutil import SMUGGLED, Stack, exchange, rss_kib, statuses

# Generous: the point is "bounded", not a figure (those are in bench/).
RSS_GROWTH_KIB = 64 * 1024


@pytest.fixture(scope="module", autouse=True)
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def stack():
    s = Stack(proxy_extra="client_header_timeout = 2\nclient_body_timeout = 5\nclient_max_body_size = 10m\n"
                          "client_body_buffer_size = 64k\n",
              sup_extra="keepalive = 5")
    try:
        yield s
    finally:
        s.close()


def log_lines(text):
    return text.count("\n")


def open_idle(port, n):
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    return socks


def close_all(socks):
    for s in socks:
        s.close()


@pytest.mark.parametrize("target,n", [("proxy", 1000), ("worker", 300)])
def test_idle_connections(stack, target, n):
    port = stack.ports[target]
    pid = stack.proxy_pid if target == "proxy" else stack.worker_pid
    before_rss = rss_kib(pid)
    before_log = log_lines(stack.proxy.log_text() + stack.worker.log())
    socks = open_idle(port, n)
    try:
        data, _ = exchange(port, b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", timeout=15)
        assert statuses(data) == [200], "a client was not served while idle connections were open"
        assert rss_kib(pid) - before_rss < RSS_GROWTH_KIB
    finally:
        close_all(socks)
    stack.healthy(port)
    added = log_lines(stack.proxy.log_text() + stack.worker.log()) - before_log
    assert added < n // 10, f"{added} log lines for {n} idle connections"


def slowloris(port, n, seconds):
    """N connections each sending a byte of a header every 0.3 s for up to
    SECONDS; returns how many the server closed before the end."""
    socks = open_idle(port, n)
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 10000
    closed = [False] * n
    start = time.monotonic()
    i = 0
    try:
        while time.monotonic() - start < seconds and not all(closed):
            for k, s in enumerate(socks):
                if closed[k]:
                    continue
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    closed[k] = True
            i += 1
            time.sleep(0.3)
        # The last send may have succeeded just before the close: look.
        for k, s in enumerate(socks):
            if not closed[k]:
                s.setblocking(False)
                try:
                    closed[k] = s.recv(65536) is not None
                except BlockingIOError:
                    pass
                except OSError:
                    closed[k] = True
    finally:
        close_all(socks)
    return sum(closed)


def test_slowloris_proxy(stack):
    """A header trickling in is cut off after client_header_timeout (2 s
    here), and other clients are served all along."""
    port = stack.ports["proxy"]
    before_rss = rss_kib(stack.proxy_pid)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("closed", slowloris(port, 200, 20)))
    t.start()
    try:
        time.sleep(1)
        for _ in range(3):
            data, _ = exchange(port, b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            assert statuses(data) == [200]
    finally:
        t.join()
    assert result["closed"] == 200, f"only {result['closed']} of 200 slowloris connections were cut off"
    assert rss_kib(stack.proxy_pid) - before_rss < RSS_GROWTH_KIB
    stack.healthy(port)


def test_slowloris_worker_serves_others(stack):
    """The worker on its own has no header deadline of its own beyond its
    keep-alive/io timeouts; it must still serve other clients meanwhile."""
    port = stack.ports["worker"]
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("closed", slowloris(port, 50, 4)))
    t.start()
    try:
        time.sleep(1)
        data, _ = exchange(port, b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert statuses(data) == [200]
    finally:
        t.join()
    stack.healthy(port)


def stream_chunked(port, total, piece=64 * 1024):
    """Sends a chunked upload of TOTAL bytes while reading the answer;
    returns (answer bytes, bytes sent before the server stopped us)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    got = bytearray()
    done = threading.Event()

    def reader():
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got.extend(b)
        except OSError:
            pass
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    sent = 0
    chunk = b"%x\r\n%s\r\n" % (piece, b"z" * piece)
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        while sent < total and not done.is_set():
            s.sendall(chunk)
            sent += piece
        if sent >= total:
            s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    done.wait(30)
    s.close()
    return bytes(got), sent


def test_endless_chunked_upload_gets_413(stack):
    """200 MB chunked at a 10m limit: 413 once the limit is passed, memory
    bounded, the app never sees the request."""
    port = stack.ports["proxy"]
    before_rss = rss_kib(stack.proxy_pid)
    mark = stack.mark()
    answer, sent = stream_chunked(port, 200 << 20)
    assert statuses(answer)[:1] == [413], answer[:300]
    assert rss_kib(stack.proxy_pid) - before_rss < RSS_GROWTH_KIB
    assert all(r["path"] != "/upload" for r in stack.since(mark))
    stack.healthy(port)


def test_chunked_upload_under_the_limit_arrives_whole(stack):
    """5 MB chunked (spooled past client_body_buffer_size): the app gets
    every byte, the proxy's memory stays bounded."""
    port = stack.ports["proxy"]
    before_rss = rss_kib(stack.proxy_pid)
    mark = stack.mark()
    answer, sent = stream_chunked(port, 5 << 20)
    assert statuses(answer) == [200], answer[:300]
    seen = [r for r in stack.since(mark) if r["path"] == "/upload"]
    assert len(seen) == 1 and seen[0]["body_len"] == 5 << 20
    assert rss_kib(stack.proxy_pid) - before_rss < RSS_GROWTH_KIB


def pipeline(port, n):
    """N pipelined GETs on one connection, the last with Connection: close;
    returns the number of responses read."""
    req = b"GET /pid HTTP/1.1\r\nHost: h\r\n\r\n"
    last = b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=60)

    def send():
        try:
            s.sendall(req * (n - 1) + last)
        except OSError:
            pass

    t = threading.Thread(target=send, daemon=True)
    t.start()
    count, buf = 0, b""
    s.settimeout(60)
    while True:
        try:
            b = s.recv(1 << 20)
        except OSError:
            break
        if not b:
            break
        buf += b
        count += buf.count(b"HTTP/1.1 200 ")
        buf = buf[buf.rfind(b"HTTP/1.1 200 ") + 1:] if b"HTTP/1.1 200 " in buf else buf[-16:]
    t.join(10)
    s.close()
    return count


@pytest.mark.parametrize("target", ["proxy", "worker"])
def test_ten_thousand_pipelined(stack, target):
    port = stack.ports[target]
    pid = stack.proxy_pid if target == "proxy" else stack.worker_pid
    before_rss = rss_kib(pid)
    mark = stack.mark()
    n = 10000
    assert pipeline(port, n) == n
    assert len(stack.since(mark)) == n
    assert rss_kib(pid) - before_rss < RSS_GROWTH_KIB
    stack.healthy(port)


@pytest.mark.parametrize("target", ["proxy", "worker"])
def test_hundred_thousand_header_fields(stack, target):
    """~700 kB of header fields: 431 long before the end, memory bounded,
    nothing reaches the app."""
    port = stack.ports[target]
    pid = stack.proxy_pid if target == "proxy" else stack.worker_pid
    before_rss = rss_kib(pid)
    mark = stack.mark()
    head = b"GET /many HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100000)) + b"\r\n"
    t0 = time.monotonic()
    answer, closed = exchange(port, head, timeout=20)
    assert statuses(answer) == [431], answer[:300]
    assert closed and time.monotonic() - t0 < 15
    assert rss_kib(pid) - before_rss < RSS_GROWTH_KIB
    assert stack.since(mark) == []
    stack.healthy(port)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")



@pytest.mark.parametrize("target", [
    "proxy",
    "worker",
])
def test_out_of_descriptors(stack, target):
    """More connections than the process may have descriptors: the excess
    waits or is refused, the process keeps serving once they go, and it
    logs the shortage a few times, not once per refused accept."""
    port = stack.ports[target]
    proc = stack.proxy.proc if target == "proxy" else stack.worker.proc
    logtext = stack.proxy.log_text if target == "proxy" else stack.worker.log
    old = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    before_log = log_lines(logtext())
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (128, old[1]))
    socks = []
    cpu = cpu_seconds(proc.pid)
    try:
        for _ in range(300):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(2)
        cpu = cpu_seconds(proc.pid) - cpu
    finally:
        close_all(socks)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, old)
    added = log_lines(logtext()) - before_log
    stack.healthy(port)
    assert added < 50, f"{added} log lines while out of descriptors:\n" + logtext()[-2000:]
    assert cpu < 1.5, f"{cpu:.2f} s of CPU in 2 s of waiting: the accept loop spins"
    assert SMUGGLED not in [r["path"] for r in stack.recorded()]
