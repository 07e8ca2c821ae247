"""Runs h2load (nghttp2-client) for the HTTP/2 rows and turns its report into
the figures wrk.py gives: CONC connections with 100 concurrent streams each.
h2load reports request times as min/max/mean, not percentiles: p50 is its
mean and p99 is left out."""
import re
import resource

from . import procs

STREAMS = 100


def parse(out):
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", out)
    if not m:
        raise ValueError("no 'finished in' in h2load output:\n" + out[-2000:])
    res = {"rps": float(m.group(3))}
    res["bytes_per_s"] = float(m.group(4)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m.group(5)]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if not m:
        raise ValueError("no request counts in h2load output:\n" + out[-2000:])
    res["requests"] = int(m.group(4))
    failed, errored, timeout = int(m.group(5)), int(m.group(6)), int(m.group(7))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    res["non2xx"] = int(m.group(3)) + int(m.group(4)) if m else 0
    m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    res["p50"] = float(m.group(5)) * unit[m.group(6)] if m else None
    res["p99"] = None
    res["err_connect"], res["err_read"], res["err_write"], res["err_timeout"] = errored, failed, 0, timeout
    res["sock_errors"] = errored + failed + timeout
    res["errors"] = res["non2xx"] + res["sock_errors"]
    return res


def run(url, conc, duration, threads, cpus=None, timeout=10):
    """Runs h2load for DURATION seconds; returns (figures, raw output, CPUs'
    worth of time it used)."""
    duration = max(1, round(duration))
    threads = max(1, min(threads, conc))
    argv = ["h2load", "-c", str(conc), "-m", str(STREAMS), "-t", str(threads), "-D", str(duration),
            "-T", str(timeout), url]
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    status, out = procs.run_capture(argv, timeout=duration + timeout + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if status != 0:
        raise ValueError(f"h2load exited {status}:\n{out[-2000:]}")
    return parse(out), out, cpu / duration
