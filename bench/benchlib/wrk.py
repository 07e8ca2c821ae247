"""Runs wrk and turns its text report into numbers."""
import re
import resource

from . import procs

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNITS_B = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def _seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_S[m.group(2)]


def _bytes(text):
    m = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text)
    if not m:
        raise ValueError(f"not a wrk size: {text!r}")
    return float(m.group(1)) * _UNITS_B[m.group(2)]


def parse(out):
    """Dict of the figures in wrk's --latency report. Raises ValueError when
    the report is not there (wrk failed)."""
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise ValueError("no Requests/sec in wrk output:\n" + out[-2000:])
    res = {"rps": float(m.group(1))}
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    res["requests"] = int(m.group(1)) if m else 0
    res["bytes_per_s"] = 0.0
    m2 = re.search(r"Transfer/sec:\s+([\d.]+\w+)", out)
    if m2:
        res["bytes_per_s"] = _bytes(m2.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+\w+)", out, re.M)
        res[key] = _seconds(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    for name, val in zip(("connect", "read", "write", "timeout"), m.groups() if m else (0,) * 4):
        res["err_" + name] = int(val)
    res["sock_errors"] = sum(res["err_" + n] for n in ("connect", "read", "write", "timeout"))
    res["errors"] = res["non2xx"] + res["sock_errors"]
    return res


def run(url, conc, duration, threads, cpus=None, timeout=10, headers=()):
    """Runs wrk once; returns (figures, raw output, CPUs' worth of time wrk used).
    With "Connection: close" in HEADERS every request is a new connection;
    over https wrk offers the ticket of its connection before (it keeps the
    session across SSL_clear), so a server that issues tickets resumes all
    but the first handshake of each of wrk's connections."""
    duration = max(1, round(duration))     # wrk takes whole seconds only
    argv = ["wrk", f"-t{threads}", f"-c{max(conc, threads)}", f"-d{duration}s",
            f"--timeout={timeout}s", "--latency", *[a for h in headers for a in ("-H", h)], url]
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    status, out = procs.run_capture(argv, timeout=duration + timeout + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if status != 0:
        raise ValueError(f"wrk exited {status}:\n{out[-2000:]}")
    return parse(out), out, cpu / duration
