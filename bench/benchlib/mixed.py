"""A client for mixed loads (bench/apps/mixed.py): most requests fast, a
few slow, sent either at a fixed rate whatever the server does (open loop,
like wrk2: a slow answer cannot hold back the requests after it, and each
latency counts from when the request was due, not from when a free
connection sent it) or by a fixed number of clients back to back (closed
loop, saturation). Keep-alive connections, HTTP/1.1, one request at a time
on each.

Every request is kept (kind, due, sent, done, status, the app's body), so
the caller can compute percentiles per kind, and line requests up with the
worker that served them."""
import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass


@dataclass
class Sample:
    kind: str           # "fast" or "slow"
    due: float          # CLOCK_MONOTONIC: when it should have been sent
    sent: float
    done: float = 0.0
    status: int = 0     # 0: no response (connection error or timeout)
    body: bytes = b""
    seq: int = 0        # sent as the query string, to find the request in a log

    @property
    def target(self):
        return f"/{self.kind}?{self.seq}"

    @property
    def latency(self):
        return self.done - self.due

    def served(self):
        """(pid, start, end) from the app's body, or None."""
        try:
            pid, start, end = self.body.split()
            return int(pid), float(start), float(end)
        except ValueError:
            return None


async def _request(conn, port, path, timeout):
    """One GET on CONN (reader, writer), opened when None; returns (conn,
    status, body), conn None when it cannot be used again."""
    if conn is None:
        conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and "close" in value.lower():
            close = True
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    if close:
        writer.close()
        conn = None
    return conn, status, body


def _kinds(n, slow_share, seed):
    rnd = random.Random(seed)
    return ["slow" if rnd.random() < slow_share else "fast" for _ in range(n)]


async def _send(pool, port, s, timeout):
    conn = await pool.get()
    s.sent = time.monotonic()
    try:
        conn, s.status, s.body = await _request(conn, port, s.target, timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        if conn is not None:
            conn[1].close()
        conn = None
    s.done = time.monotonic()
    pool.put_nowait(conn)


async def _open_loop(port, rate, duration, conns, slow_share, seed, timeout):
    pool = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(None)       # connected on first use
    kinds = _kinds(int(rate * duration), slow_share, seed)
    samples, tasks = [], []
    t0 = time.monotonic() + 0.05
    for i, kind in enumerate(kinds):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        s = Sample(kind, due, 0.0, seq=i)
        samples.append(s)
        tasks.append(asyncio.ensure_future(_send(pool, port, s, timeout)))
    await asyncio.gather(*tasks)
    await _close_pool(pool)
    return samples


async def _closed_loop(port, clients, duration, slow_share, seed, timeout):
    samples = []
    end = time.monotonic() + duration

    async def client(k):
        kinds = _kinds(100000, slow_share, seed + k)
        pool = asyncio.Queue()
        pool.put_nowait(None)
        i = 0
        while time.monotonic() < end:
            s = Sample(kinds[i % len(kinds)], time.monotonic(), 0.0, seq=k * 1000000 + i)
            i += 1
            samples.append(s)
            await _send(pool, port, s, timeout)
        await _close_pool(pool)
    await asyncio.gather(*(client(k) for k in range(clients)))
    return samples


async def _close_pool(pool):
    while not pool.empty():
        conn = pool.get_nowait()
        if conn is not None:
            conn[1].close()


def open_loop(port, rate, duration, conns=64, slow_share=0.05, seed=1, timeout=30.0):
    """RATE requests a second for DURATION seconds on up to CONNS connections."""
    return asyncio.run(_open_loop(port, rate, duration, conns, slow_share, seed, timeout))


def closed_loop(port, clients, duration, slow_share=0.05, seed=1, timeout=30.0):
    """CLIENTS connections, each sending its next request when the last is answered."""
    return asyncio.run(_closed_loop(port, clients, duration, slow_share, seed, timeout))


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def figures(samples, duration):
    """rps, p50/p99 of the fast requests and of all, and the failures."""
    ok = [s for s in samples if s.status == 200]
    fast = [s.latency for s in ok if s.kind == "fast"]
    return {"rps": len(ok) / duration if duration else 0.0,
            "requests": len(ok),
            "errors": len(samples) - len(ok),
            "p50": percentile(fast, 0.50), "p99": percentile(fast, 0.99),
            "p99_all": percentile([s.latency for s in ok], 0.99)}


def waits_beside_idle(samples, min_wait=0.1, min_idle=0.025, waited=None):
    """Fast requests that waited longer than MIN_WAIT for a worker while
    another worker sat idle for MIN_IDLE or longer within that wait.

    A worker's busy times are the app's own START..END of every request it
    served; its idle times are the gaps between them. A request waited from
    when it was sent until its START, or, with WAITED ({target: seconds},
    e.g. the proxy's access log), for that long before its START: the
    proxy's own measure, which a stalled client cannot stretch."""
    busy = {}
    for s in samples:
        got = s.served()
        if got:
            busy.setdefault(got[0], []).append((got[1], got[2]))
    gaps = []
    for spans in busy.values():
        spans.sort()
        gaps += [(a[1], b[0]) for a, b in zip(spans, spans[1:]) if b[0] - a[1] >= min_idle]
    bad = []
    for s in samples:
        got = s.served()
        if s.kind != "fast" or not got:
            continue
        since = got[1] - waited[s.target] if waited is not None and s.target in waited else s.sent
        if got[1] - since <= min_wait:
            continue
        for g0, g1 in gaps:
            if min(g1, got[1]) - max(g0, since) >= min_idle:
                bad.append(s)
                break
    return bad


def run(port, kind, rate, conns, duration, cpus=None):
    """One bench/run case in a child process (pinned to CPUS like wrk): KIND
    "open" at RATE, or "closed"; (figures, raw report, CPUs' worth of time
    the client used)."""
    from . import procs
    argv = [sys.executable, "-m", "benchlib.mixed", "--port", str(port), "--conns", str(conns),
            "--duration", str(duration)]
    if kind == "open":
        argv += ["--rate", str(rate)]
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    status, out = procs.run_capture(argv, timeout=duration + 90, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if status != 0:
        raise ValueError(f"mixed client exited {status}:\n{out[-2000:]}")
    fig = json.loads(out.strip().splitlines()[-1])
    fig.update(bytes_per_s=0.0, non2xx=fig["errors"], sock_errors=0,
               err_connect=0, err_read=0, err_write=0, err_timeout=0)
    return fig, out, cpu / duration


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m benchlib.mixed", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, help="requests a second (open loop); without it, closed loop")
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--duration", type=float, default=10)
    o = p.parse_args(argv)
    if o.rate:
        samples = open_loop(o.port, o.rate, o.duration, conns=o.conns)
    else:
        samples = closed_loop(o.port, o.conns, o.duration)
    fig = figures(samples, o.duration)
    fig["fast_waits_beside_idle"] = len(waits_beside_idle(samples))
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
