"""Helpers for the appstack-proxy tests: run the real proxy on a private
config, talk raw HTTP to it, and a scriptable upstream HTTP server on real
sockets (for answers a worker would never give: hangs, resets, chunking)."""
import os
import signal
import socket
import subprocess
import threading
import time

from conftest import APPS, free_port, prog, wait_for, write_config

ENV = dict(os.environ)
for var in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM"):
    ENV.pop(var, None)


# The number of proxy processes in the tests' configs: 1, unless a test
# runs with the proxy_workers fixture (conftest.py), which sets it to 1 and
# then 2. "auto" would follow the machine's CPUs, so the same test would
# run differently on another machine.
WORKERS = 1


def proxy_config(tmpdir, port, upstreams=(), locations="", extra="", name="appstack.ini", workers=None):
    ups = "\n".join(f"upstream = {u}" for u in upstreams)
    # workers in a [proxy] of its own at the end: the lines of the rest stay
    # where the tests that check FILE:LINE messages expect them.
    text = (f"[proxy]\nlisten = 127.0.0.1:{port}\n{ups}\n{extra}\n{locations}\n"
            f"\n[proxy]\nworkers = {workers or WORKERS}\n")
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Proxy:
    """A running appstack-proxy; its stderr (log) goes to a file."""

    def __init__(self, config, port, env=None, wrap=()):
        """WRAP: a command that execs the proxy given as its last arguments
        (the proxy's pid stays the one Popen gives)."""
        self.config, self.port = config, port
        self.logpath = config + ".log"
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen([*wrap, prog("appstack-proxy"), "-c", config], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env or ENV)
        wait_for(self._accepts, timeout=10, what="appstack-proxy listening")

    def _accepts(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"appstack-proxy exited with {self.proc.returncode}:\n{self.log_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log_text(self):
        self.log.flush()
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def serving(self):
        """The pids of the serving processes (the master's children)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def rss_kib(self):
        """What the serving processes hold, together."""
        total = 0
        for pid in self.serving():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
            except OSError:
                pass
        return total

    # What the master logs when a serving process ends badly (a crash, a
    # sanitizer's abort or exit status): fails the test unless expected.
    DEATHS = ("was killed by signal", "exited with status")

    def stop(self, deaths_expected=False):
        """TERM; a crash or sanitizer report (non-zero exit) of the master
        or of a serving process fails the test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.log_text() if not self.log.closed else ""
        self.log.close()
        assert self.proc.returncode == 0, f"appstack-proxy exited with {self.proc.returncode}:\n{text[-4000:]}"
        if not deaths_expected:
            bad = [l for l in text.splitlines() if any(d in l for d in self.DEATHS)]
            assert not bad, "a proxy process ended badly:\n" + text[-4000:]


def start_ws_echo():
    """tests/apps/ws_echo.py (python3-websockets) on a free port: (process, port)."""
    port = free_port()
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(APPS, "ws_echo.py"), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout.readline().strip() == b"ready"
    return proc, port


def start_proxy(tmpdir, upstreams=(), locations="", extra=""):
    port = free_port()
    return Proxy(proxy_config(tmpdir, port, upstreams, locations, extra), port)


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body, self.raw_head = status, reason, headers, body, raw_head

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)


def read_response(f, head_only=False):
    """One response from a buffered socket file; None at EOF."""
    line = f.readline()
    if not line:
        return None
    raw = [line]
    version, status, *reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = {}
    while True:
        h = f.readline()
        if not h:
            break
        raw.append(h)
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(status)
    body = b""
    if head_only or status in (204, 304) or 100 <= status < 200:
        pass
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read()
    return Response(status, reason[0] if reason else "", headers, body, b"".join(raw))


def raw_request(port, data, timeout=10, head_only=False):
    """Sends DATA as is and returns the first response (or None at EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        with s.makefile("rb") as f:
            return read_response(f, head_only)


def get(port, path, headers=None, method="GET", body=b"", timeout=10):
    hdrs = {"Host": "localhost", "Connection": "close", **(headers or {})}
    if body:
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return raw_request(port, head.encode("latin-1") + body, timeout=timeout, head_only=method == "HEAD")


class UpRequest:
    def __init__(self, method, target, headers, body, raw_head, conn_no):
        self.method, self.target, self.headers, self.body = method, target, headers, body
        self.raw_head, self.conn_no = raw_head, conn_no

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


def ok(body=b"ok", status="200 OK", extra=""):
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


class Upstream:
    """An HTTP/1.1 server on a thread. HANDLER(req) returns the bytes to send,
    None to close without answering, or a callable(sock) that does its own
    sending. Records every request it read and counts connections."""

    def __init__(self, handler=None, port=0, path=None):
        """PATH: on that unix socket instead of a TCP port."""
        self.handler = handler or (lambda req: ok(f"{req.method} {req.target}".encode()))
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.port, self.addr = None, f"unix:{path}"
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port))
            self.port = self.sock.getsockname()[1]
            self.addr = f"127.0.0.1:{self.port}"
        self.sock.listen(256)
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.closing = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _read(self, f, n):
        line = f.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        raw, headers = [line], []
        while True:
            h = f.readline()
            raw.append(h)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = f.read(length) if length else b""
        return UpRequest(method, target, headers, body, b"".join(raw), n)

    def _serve(self, c, n):
        try:
            with c, c.makefile("rb") as f:
                while True:
                    req = self._read(f, n)
                    if req is None:
                        return
                    with self.lock:
                        self.requests.append(req)
                    out = self.handler(req)
                    if out is None:
                        return
                    if callable(out):
                        if out(c) is False:
                            return
                        continue
                    c.sendall(out)
        except OSError:
            pass

    def close(self):
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the thread blocked in accept
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def wait_exit(proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.05)
    raise AssertionError("process did not exit")


class Notify:
    """A NOTIFY_SOCKET that records the sender's pid with every line."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.got = []       # (pid, line)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        creds_size = socket.CMSG_SPACE(12)
        while not self.done.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, creds_size)
            except socket.timeout:
                continue
            pid = next((int.from_bytes(d[:4], "little") for lvl, typ, d in anc
                        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS), None)
            self.got += [(pid, line) for line in data.decode().splitlines()]

    def lines(self):
        return [line for _, line in list(self.got)]

    def close(self):
        self.done.set()
        self.thread.join()
        self.sock.close()
