"""Ports, readiness polling and one-off requests against a started stack."""
import http.client
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(url, timeout=5.0):
    """(status, body) of one GET with curl; status 0 when nothing answered."""
    try:
        r = subprocess.run(
            # -k: the TLS stacks' certificate is made for the run, by no CA
            ["curl", "-s", "-k", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout), url],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return 0, b""
    body, _, code = r.stdout.rpartition(b"\n")
    try:
        return int(code), body
    except ValueError:
        return 0, b""


def wait_ready(url, procs, timeout=60.0, interval=0.1):
    """Polls URL with curl until it answers 200. Raises if a process died or
    TIMEOUT passed, with the tail of the dead process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = curl(url, timeout=2)
        if status == 200:
            return
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.popen.returncode}) before {url} "
                                   f"answered:\n{p.log_tail()}")
        time.sleep(interval)
    tails = "".join(f"\n--- {p.name} log:\n{p.log_tail(8)}" for p in procs)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s; last status "
                       f"{status}{tails}")


def wait_port(port, procs, timeout=60.0, interval=0.05):
    """Waits until 127.0.0.1:PORT accepts a connection (a server that is not
    HTTP). Raises like wait_ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.popen.returncode}) before port {port} "
                                   f"accepted:\n{p.log_tail()}")
        time.sleep(interval)
    raise RuntimeError(f"port {port} did not accept within {timeout:.0f}s")


def get_status(host, port, path, timeout):
    """Status of one GET over a fresh connection; 0 on any connection error.
    Used where curl's own start-up time would blur the measurement."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def time_to_200(host, port, path, t0, procs, timeout=60.0, interval=0.01):
    """Seconds from monotonic time T0 until GET PATH first answers 200."""
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if get_status(host, port, path, timeout=max(0.5, deadline - time.monotonic())) == 200:
            return time.monotonic() - t0
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise RuntimeError(f"{dead[0].name} exited ({dead[0].popen.returncode}):\n"
                               f"{dead[0].log_tail()}")
        time.sleep(interval)
    raise RuntimeError(f"no 200 from {host}:{port}{path} within {timeout:.0f}s")
