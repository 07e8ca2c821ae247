"""Helpers for the hostile-input tests (tests/test_hostile_*.py): a real
worker running the recorder app, the real proxy in front of it, raw
exchanges that read until the server closes, and the recorder's log."""
import json
import os
import pwd
import shutil
import socket
import tempfile
import time

import pytest

from conftest import APPS, free_port
from proxyutil import Proxy, proxy_config
from workerutil import Worker, worker_config

SMUGGLED = "/smuggled"


class Stack:
    """appstack-worker (recorder app) alone, and appstack-proxy in front of
    it: PORTS["worker"] reaches the worker directly, PORTS["proxy"] goes
    through the proxy. The app's record of requests is in self.log."""

    def __init__(self, proxy_extra="", sup_extra="", locations=""):
        self.dir = tempfile.mkdtemp(prefix="as-hx-", dir="/tmp")
        self.log = os.path.join(self.dir, "recorded.jsonl")
        self.worker = self.proxy = None
        wport = free_port()
        conf = worker_config(self.dir, wport, module="recorder", chdir=APPS, sup_extra=sup_extra)
        self.worker = Worker(self.dir, wport, conf, env={"RECORDER_LOG": self.log}).start()
        pport = free_port()
        pconf = proxy_config(self.dir, pport, [f"127.0.0.1:{wport}"], locations=locations, extra=proxy_extra,
                             name="proxy.ini")
        self.proxy = Proxy(pconf, pport)
        self.ports = {"worker": wport, "proxy": pport}
        self.worker_pid = self.worker.proc.pid
        self.proxy_pid = self.proxy.proc.pid

    def recorded(self):
        """Every request the app has seen so far, oldest first."""
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def mark(self):
        return len(self.recorded())

    def since(self, mark):
        return self.recorded()[mark:]

    def healthy(self, port):
        """The same processes still run and still serve a plain request."""
        assert self.worker.proc.poll() is None, "worker died:\n" + self.worker.log()
        assert self.proxy.proc.poll() is None, "proxy died:\n" + self.proxy.log_text()
        assert self.worker.proc.pid == self.worker_pid and self.proxy.proc.pid == self.proxy_pid
        data, _ = exchange(port, b"GET /pid HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert statuses(data) == [200], data[:300]
        assert data.endswith(str(self.worker_pid).encode()), data[-100:]

    def close(self):
        for p in (self.proxy, self.worker):
            if p is not None:
                p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def stack():
    """A Stack for a test module (import it into the module to use it)."""
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def exchange(port, data, timeout=8, parts=None, pause=0.05):
    """Sends DATA (or each of PARTS with a pause between), then reads until
    the server closes. Returns (everything received, closed?): closed is
    False when the server kept the connection open for TIMEOUT seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            for i, part in enumerate(parts or [data]):
                if i:
                    time.sleep(pause)
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass        # the server may answer and close before the last part
        return read_until_close(s, timeout)


def read_until_close(s, timeout):
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, False
        s.settimeout(left)
        try:
            got = s.recv(65536)
        except ConnectionResetError:
            return out, True
        except socket.timeout:
            return out, False
        if not got:
            return out, True
        out += got


def split_responses(data):
    """[(status, head bytes, body bytes)] of the responses in DATA (bodies
    framed by Content-Length or chunked; anything else ends the list)."""
    out = []
    while data.startswith(b"HTTP/"):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            hdrs[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            out.append((status, head, b""))
            data = rest
            continue
        if b"content-length" in hdrs:
            n = int(hdrs[b"content-length"])
            body, data = rest[:n], rest[n:]
        elif hdrs.get(b"transfer-encoding", b"").lower() == b"chunked":
            body, data = dechunk(rest)
        else:
            body, data = rest, b""
        out.append((status, head, body))
    return out


def dechunk(data):
    body = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            _, _, data = data.partition(b"\r\n")
            return body, data
        body, data = body + data[:size], data[size + 2:]


def statuses(data):
    return [r[0] for r in split_responses(data)]


def says_close(data):
    """True when the last response's head carries Connection: close."""
    rs = split_responses(data)
    return bool(rs) and b"\r\nconnection: close" in rs[-1][1].lower()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ids_of(pid):
    """(real, effective, saved, fs) uids and gids of PID from /proc."""
    uid = gid = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = tuple(int(x) for x in line.split()[1:])
            elif line.startswith("Gid:"):
                gid = tuple(int(x) for x in line.split()[1:])
    return uid, gid


def unprivileged_user():
    """(name, uid, gid) of an existing unprivileged account (nobody)."""
    pw = pwd.getpwnam("nobody")
    return pw.pw_name, pw.pw_uid, pw.pw_gid
