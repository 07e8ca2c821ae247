"""The full-handshake row: bench/tlsload.c (built here with cc) opens a new
connection with a full TLS handshake for every request, offering no
session, because wrk resumes the last session on each reconnection."""
import os
import re

from . import apps, procs


def binary(workdir):
    """Path of tlsload, built once per run."""
    return procs.build_c(workdir, "tlsload", os.path.join(apps.BENCH, "tlsload.c"), ["-lssl", "-lcrypto"])


def parse(out):
    m = re.search(r"requests (\d+) seconds ([\d.]+) rate ([\d.]+) errors (\d+) p50 ([\d.]+) p99 ([\d.]+)", out)
    if not m:
        raise ValueError("no figures in tlsload output:\n" + out[-2000:])
    errors = int(m.group(4))
    return {"rps": float(m.group(3)), "requests": int(m.group(1)), "bytes_per_s": None,
            "p50": float(m.group(5)) / 1e3, "p99": float(m.group(6)) / 1e3, "non2xx": 0, "err_connect": 0,
            "err_read": errors, "err_write": 0, "err_timeout": 0, "sock_errors": errors, "errors": errors}


def run(workdir, port, path, conc, duration, cpus=None):
    """CONC clients, each a new connection and full handshake per request,
    for DURATION seconds; returns (figures, raw output, CPUs' worth of time
    the client used)."""
    out, busy = procs.run_client([binary(workdir), str(port), path, str(conc), str(max(1.0, duration))], duration,
                                 cpus)
    return parse(out), out, busy
