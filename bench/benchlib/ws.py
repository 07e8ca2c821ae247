"""The WebSocket rows: bench/wsload.c (built here with cc) is both the
upstream (a handshake, then an echo of every byte) and the client (many
connections, each sending a message and waiting for its echo), so that
neither limits the front being measured."""
import os
import re

from . import apps, procs

MESSAGE = 64        # bytes per message


def binary(workdir):
    """Path of wsload, built once per run."""
    return procs.build_c(workdir, "wsload", os.path.join(apps.BENCH, "wsload.c"), ["-lcrypto"])


def parse(out):
    m = re.search(r"messages (\d+) seconds ([\d.]+) rate ([\d.]+) errors (\d+)", out)
    if not m:
        raise ValueError("no figures in wsload output:\n" + out[-2000:])
    errors = int(m.group(4))
    return {"rps": float(m.group(3)), "requests": int(m.group(1)), "bytes_per_s": float(m.group(3)) * MESSAGE,
            "p50": None, "p99": None, "non2xx": 0, "err_connect": 0, "err_read": errors, "err_write": 0,
            "err_timeout": 0, "sock_errors": errors, "errors": errors}


def run(workdir, port, path, conc, duration, cpus=None):
    """CONC connections echoing for DURATION seconds; returns (figures, raw
    output, CPUs' worth of time the client used)."""
    out, busy = procs.run_client([binary(workdir), "client", str(port), path, str(conc), str(max(1.0, duration)),
                                  str(MESSAGE)], duration, cpus)
    return parse(out), out, busy
