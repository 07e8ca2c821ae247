"""Helpers for the appstack-worker tests: start a real worker (standalone or
with the master contract played by the test itself) and talk raw HTTP."""
import mmap
import os
import signal
import socket
import struct
import subprocess
import time

from conftest import APPS, free_port, prog, wait_for, write_config

# struct as_scoreboard (common/scoreboard.h): take_queued, then the slots;
# struct as_slot: a head, then one struct as_req per request thread.
SB_HEAD_FMT = "<Q"
SLOT_HEAD_FMT = "<IiQQQI4x"
REQ_FMT = "<QQ16s208s64s"
MAX_THREADS = 128
SLOT_SIZE = struct.calcsize(SLOT_HEAD_FMT) + MAX_THREADS * struct.calcsize(REQ_FMT)
SLOTS = 1024
SB_SIZE = struct.calcsize(SB_HEAD_FMT) + SLOT_SIZE * SLOTS
STATES = {0: "free", 1: "loading", 2: "idle", 3: "busy", 4: "stopping", 5: "recycle"}


def worker_config(tmpdir, port, module="wsgiapp", app_extra="", sup_extra="", chdir=APPS):
    """A config for one worker listening on 127.0.0.1:PORT; the extras are
    lines added to [app] and [supervisor]."""
    lines = ["[app]", f"module = {module}", f"chdir = {chdir}", app_extra,
             "[supervisor]", f"listen = 127.0.0.1:{port}", sup_extra]
    return write_config(tmpdir, "\n".join(lines) + "\n")


class Worker:
    """A running appstack-worker; logs (stderr) go to a file."""

    def __init__(self, tmpdir, port, config, env=None, master=False):
        self.tmpdir, self.port, self.config = tmpdir, port, config
        self.logpath = os.path.join(tmpdir, "worker.log")
        self.proc = None
        self.chan = None
        self.sb = None
        self.env = dict(os.environ)
        self.env.pop("JOURNAL_STREAM", None)
        self.env["WSGIAPP_MARKERS"] = tmpdir
        self.env.update(env or {})
        self.master = master
        self.first_message = None

    def start(self, wait=True):
        log = open(self.logpath, "ab")
        args = [prog("appstack-worker"), "-c", self.config]
        if self.master:
            self._start_with_master(args, log)
        else:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=self.env, cwd=self.tmpdir)
        log.close()
        if wait and not self.master:
            wait_for(self.accepts, timeout=30, what="worker listening")
        return self

    def _start_with_master(self, args, log):
        """Plays appstackd: listening socket, scoreboard memfd, channel."""
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(128)
        sbfd = os.memfd_create("scoreboard", 0)
        os.ftruncate(sbfd, SB_SIZE)
        self.sb = mmap.mmap(sbfd, SB_SIZE)
        self.chan, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(self.env)
        env.update({
            "APPSTACK_WORKER_ID": "7", "APPSTACK_GENERATION": "3", "APPSTACK_SLOT": "5",
            "APPSTACK_SCOREBOARD_FD": str(sbfd), "APPSTACK_CHANNEL_FD": str(child.fileno()),
            "APPSTACK_LISTEN_FDS": str(self.lsock.fileno()),
        })
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=log, env=env, cwd=self.tmpdir,
            pass_fds=(sbfd, child.fileno(), self.lsock.fileno()))
        os.close(sbfd)
        child.close()

    def read_channel(self, timeout=30):
        self.chan.settimeout(timeout)
        return self.chan.recv(1 << 20).decode()

    def slot(self, index=5):
        """The slot's head and the request of its first thread (the one
        request of a worker with threads = 1)."""
        base = struct.calcsize(SB_HEAD_FMT) + index * SLOT_SIZE
        state, pid, requests, errors, heartbeat, threads = struct.unpack_from(SLOT_HEAD_FMT, self.sb, base)
        start, thread, method, path, request_id = struct.unpack_from(
            REQ_FMT, self.sb, base + struct.calcsize(SLOT_HEAD_FMT))
        return {"state": STATES.get(state, state), "pid": pid, "requests": requests, "errors": errors,
                "threads": threads, "request_start": start, "heartbeat": heartbeat, "thread": thread,
                "request_id": request_id.split(b"\0")[0].decode(),
                "method": method.split(b"\0")[0].decode(), "path": path.split(b"\0")[0].decode()}

    def accepts(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.chan:
            self.chan.close()
        if self.master:
            self.lsock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def sanitized():
    """True when appstack-worker is an ASan build: its quarantine of freed
    memory makes RSS figures meaningless."""
    with open(prog("appstack-worker"), "rb") as f:
        return b"__asan_init" in f.read()


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def recv_all(sock, timeout=10):
    """Everything until the server closes (or TIMEOUT without data)."""
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return out


def raw(port, data, timeout=10):
    """Sends DATA, returns everything the worker answers until it closes."""
    with connect(port, timeout) as s:
        s.sendall(data)
        return recv_all(s, timeout)


class Conn:
    """A client connection that reads responses one at a time, keeping any
    bytes past the current one (pipelining)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head=False):
        """(status, headers with lower-case names, body) of the next response."""
        status = int(self._line().split()[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or status in (204, 304) or status < 200:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._exact(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, headers, body
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        body = self.buf + recv_all(self.sock)
        self.buf = b""
        return status, headers, body

    def closed(self, timeout=5):
        return not self.buf and is_closed(self.sock, timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(port, method="GET", path="/", headers=(), body=b"", version="HTTP/1.1"):
    """One request on a new connection; returns (status, headers, body)."""
    head = f"{method} {path} {version}\r\nHost: localhost\r\n"
    for name, value in headers:
        head += f"{name}: {value}\r\n"
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        head += f"Content-Length: {len(body)}\r\n"
    head += "Connection: close\r\n\r\n"
    with Conn(port) as c:
        c.send(head.encode("latin-1") + body)
        return c.response(head=method == "HEAD")


def status_of(data):
    if not data.startswith(b"HTTP/1."):
        return None
    return int(data.split(b" ", 2)[1])


def is_closed(sock, timeout=5):
    """True when the peer has closed SOCK (EOF or reset) within TIMEOUT."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def new_port():
    return free_port()


def wait_exit(proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.05)
    raise AssertionError("worker did not exit")
