"""Load during a chaos scenario, counted precisely.

Two sources run together: wrk (GET, the bulk of the load and the latency
percentiles; a Lua script counts every status) and a small keep-alive client
(Probe) that alternates GET and HEAD, which wrk cannot send, and remembers
the first failures with their time so that they can be matched with the
event that caused them."""
import http.client
import os
import re
import socket
import subprocess
import threading
import time

from benchlib import wrk as benchwrk

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "count.lua")
ERROR_KINDS = ("connect", "read", "write", "timeout")


class Wrk:
    """wrk in the background for DURATION seconds."""

    def __init__(self, url, conc, duration, threads=1, timeout=10, cpus=None):
        self.duration = max(1, round(duration))
        argv = ["wrk", f"-t{threads}", f"-c{max(conc, threads)}", f"-d{self.duration}s",
                f"--timeout={timeout}s", "--latency", "-s", LUA, url]
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        self.timeout = timeout
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True)

    def result(self):
        try:
            out, _ = self.popen.communicate(timeout=self.duration + self.timeout + 30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, _ = self.popen.communicate()
        if self.popen.returncode != 0:
            raise RuntimeError(f"wrk exited {self.popen.returncode}:\n{out[-2000:]}")
        res = benchwrk.parse(out)
        m = re.search(r"^status (.*)$", out, re.M)
        res["by_status"] = {}
        for item in (m.group(1).split() if m else []):
            status, n = item.split("=")
            res["by_status"][int(status)] = int(n)
        m = re.search(r"^p99_us (\d+)$", out, re.M)
        if m:
            res["p99"] = int(m.group(1)) / 1e6
        res["raw"] = out
        return res

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


class Probe:
    """CONNS threads, each on its own keep-alive connection, alternating GET
    and HEAD over PATHS until stop(); a failure closes the connection and the
    next request opens a new one, as wrk does."""

    def __init__(self, host, port, paths=("/",), conns=2, timeout=10.0, methods=("GET", "HEAD")):
        self.host, self.port, self.paths, self.timeout = host, port, paths, timeout
        self.methods = methods
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.by_status = {}         # (method, status) -> count
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.failures = []          # (seconds since start, method, path, what)
        self.latencies = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(conns)]
        for t in self.threads:
            t.start()

    def _fail(self, method, path, kind, what):
        with self.lock:
            if kind in self.errors:
                self.errors[kind] += 1
            if len(self.failures) < 50:
                self.failures.append((round(time.monotonic() - self.t0, 3), method, path, what))

    def _one(self, conn, method, path):
        """One request; returns the connection to use next (None: reconnect)."""
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.connect()
            except socket.timeout:
                self._fail(method, path, "timeout", "connect timed out")
                return None
            except OSError as e:
                self._fail(method, path, "connect", repr(e))
                return None
        t = time.monotonic()
        try:
            body = b"x=1" if method == "POST" else None
            conn.request(method, path, body=body, headers={"Host": "localhost"})
        except OSError as e:
            self._fail(method, path, "write", repr(e))
            conn.close()
            return None
        try:
            resp = conn.getresponse()
            resp.read()
        except socket.timeout:
            self._fail(method, path, "timeout", "no response in time")
            conn.close()
            return None
        except (OSError, http.client.HTTPException) as e:
            self._fail(method, path, "read", repr(e))
            conn.close()
            return None
        with self.lock:
            key = (method, resp.status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            self.latencies.append(time.monotonic() - t)
        if not 200 <= resp.status < 300:
            self._fail(method, path, "status", f"{resp.status} {resp.reason}")
        if resp.will_close:
            conn.close()
            return None
        return conn

    def _run(self, i):
        conn, n = None, i
        while not self.stopping.is_set():
            method = self.methods[n % len(self.methods)]
            path = self.paths[(n // len(self.methods)) % len(self.paths)]
            conn = self._one(conn, method, path)
            n += 1
        if conn is not None:
            conn.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 5)
        return self.result()

    def result(self):
        with self.lock:
            by_status = dict(self.by_status)
            lat = sorted(self.latencies)
        requests = sum(by_status.values()) + sum(self.errors.values())
        non2xx = sum(n for (m, s), n in by_status.items() if not 200 <= s < 300)
        return {"requests": requests, "by_status": by_status, "non2xx": non2xx,
                "errors": dict(self.errors), "sock_errors": sum(self.errors.values()),
                "p99": lat[int(len(lat) * 0.99)] if lat else None,
                "failures": list(self.failures)}
