"""Runs the measurement plan: every unit's stacks in turn, every repetition,
so that all stacks see the same machine conditions (interleaving)."""
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import h2load, mixed, net, procs, stacks, tlsload, wrk, ws

BUSY_CLIENT = 0.9      # wrk using this much of its core: the client is the limit


@dataclass
class Case:
    label: str
    path: str
    check: bytes        # the response body must contain this
    concs: list
    kind: str = "wrk"   # "wrk"; "close": wrk, a new connection per request (wrk resumes the TLS session);
                        # "full": tlsload.py, a new connection and full TLS handshake per request;
                        # "h2": h2load, 100 streams;
                        # "open", "closed": bench/benchlib/mixed.py's client, /fast and /slow at
                        # RATE a second or back to back on each connection;
                        # "gzip": wrk asking for gzip; "ws": WebSocket echo (ws.py)
    rate: int = 0


@dataclass
class Unit:
    group: str
    title: str
    classes: tuple
    app: object
    workers: int
    cases: list = field(default_factory=list)


class Results:
    """Samples by row (group, workers, case, conc) and stack."""

    def __init__(self):
        self.rows = {}
        self.lifecycle = {}
        self.memory = {}
        self.skipped = {}

    def row(self, unit, case, conc):
        key = (unit.group, unit.workers, case.label, conc)
        return self.rows.setdefault(key, {"title": unit.title, "stacks": {}})

    def stack_entry(self, row, cls):
        return row["stacks"].setdefault(cls.key, {
            "label": cls.label, "appstack": cls.appstack, "samples": [], "failures": []})


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, opts, ctx, results, rawdir):
        self.o, self.ctx, self.res, self.rawdir = opts, ctx, results, rawdir
        self.seq = 0

    # ---- throughput units ------------------------------------------------

    def run_unit(self, unit, rep):
        classes = _rotate(unit.classes, rep)
        for cls in classes:
            why = stacks.available(cls, self.ctx.builddir)
            if why:
                self.res.skipped[cls.key] = why
                continue
            self.run_stack(unit, cls, rep)

    def run_stack(self, unit, cls, rep):
        stack = cls(self.ctx, unit.app, unit.workers)
        log(f"  [{rep + 1}] {unit.title}: {cls.label}")
        try:
            stack.start()
            stack.wait_ready(unit.cases[0].path, timeout=self.o.start_timeout)
            for case in unit.cases:
                _verify(stack, case)
            if self.o.warmup > 0 and unit.cases[0].kind != "ws":
                first = unit.cases[0]
                if first.kind in ("open", "closed"):
                    # the same mix: a proxy that learns what is slow has learnt it
                    mixed.run(stack.port, first.kind, first.rate, first.concs[0], self.o.warmup,
                              self.o.client_cpus)
                else:
                    wrk.run(stack.url(first.path), self.o.base_conc, self.o.warmup,
                            self.o.threads, self.o.client_cpus)
            for case in unit.cases:
                for conc in case.concs:
                    self.measure(unit, case, conc, cls, stack, rep)
        except (RuntimeError, ValueError, OSError) as e:
            self.fail(unit, cls, f"{type(e).__name__}: {e}")
        finally:
            stack.stop()

    def measure(self, unit, case, conc, cls, stack, rep):
        entry = self.res.stack_entry(self.res.row(unit, case, conc), cls)
        pids = stack.all_pids()
        cpu0 = procs.cpu_seconds(pids)
        try:
            if case.kind == "h2":
                fig, raw, busy = h2load.run(stack.url(case.path), conc, self.o.duration,
                                            self.o.threads, self.o.client_cpus)
            elif case.kind in ("open", "closed"):
                fig, raw, busy = mixed.run(stack.port, case.kind, case.rate, conc, self.o.mixed_duration,
                                           self.o.client_cpus)
            elif case.kind == "full":
                fig, raw, busy = tlsload.run(self.ctx.workdir, stack.port, case.path, conc, self.o.duration,
                                             self.o.client_cpus)
            elif case.kind == "ws":
                fig, raw, busy = ws.run(self.ctx.workdir, stack.port, case.path, conc, self.o.duration,
                                        self.o.client_cpus)
            else:
                fig, raw, busy = wrk.run(stack.url(case.path), conc, self.o.duration,
                                         self.o.threads, self.o.client_cpus,
                                         headers=("Connection: close",) if case.kind == "close" else
                                         ("Accept-Encoding: gzip",) if case.kind == "gzip" else ())
        except ValueError as e:
            entry["failures"].append(str(e)[:500])
            log(f"      {case.label} c={conc}: wrk failed: {str(e)[:200]}")
            return
        server_cpu = procs.cpu_seconds(pids) - cpu0
        # No response at all in the whole case: wrk's latencies are then
        # zeros, which must not pass for fast answers.
        fig["stalled"] = int(fig["requests"] == 0)
        if fig["stalled"]:
            fig["p50"] = fig["p99"] = None
        fig["rep"] = rep
        fig["client_busy"] = busy / self.o.client_capacity
        fig["server_cpu_us_per_req"] = 1e6 * server_cpu / fig["requests"] if fig["requests"] else None
        entry["samples"].append(fig)
        self.save_raw(unit, case, conc, cls, rep, raw)
        busy = " (client-bound)" if fig["client_busy"] > BUSY_CLIENT else ""
        busy += " (NO RESPONSE)" if fig["stalled"] else ""
        log(f"      {case.label:14} c={conc:<5} {fig['rps']:10.0f} req/s  p99 "
            f"{_ms(fig['p99'])} ms  errors {fig['errors']}{busy}")

    def fail(self, unit, cls, why):
        log(f"      FAILED: {why[:1500]}")
        for case in unit.cases:
            for conc in case.concs:
                entry = self.res.stack_entry(self.res.row(unit, case, conc), cls)
                entry["failures"].append(why[:1500])

    def save_raw(self, unit, case, conc, cls, rep, raw):
        self.seq += 1
        name = f"{self.seq:04d}-{unit.group}-w{unit.workers}-{cls.key}-c{conc}-r{rep}.txt"
        with open(os.path.join(self.rawdir, name.replace("+", "_")), "w") as f:
            f.write(f"# {case.label} {case.path}\n{raw}")

    # ---- memory, cold start, respawn --------------------------------------

    def run_lifecycle(self, classes, app, rep):
        for cls in _rotate(classes, rep):
            why = stacks.available(cls, self.ctx.builddir)
            if why:
                self.res.skipped[cls.key] = why
                continue
            entry = self.res.lifecycle.setdefault(cls.key, {
                "label": cls.label, "appstack": cls.appstack, "samples": [], "failures": []})
            log(f"  [{rep + 1}] memory, cold start, respawn (Django, 1 worker): {cls.label}")
            stack = cls(self.ctx, app, 1)
            try:
                entry["samples"].append(self.lifecycle_sample(stack))
            except (RuntimeError, ValueError, OSError) as e:
                entry["failures"].append(f"{type(e).__name__}: {e}"[:1500])
                log(f"      FAILED: {e}")
            finally:
                stack.stop()

    def run_memory(self, classes, app, workers, rep):
        """Total PSS of each stack's app server (master, workers and any
        template) after a second of load."""
        for cls in _rotate(classes, rep):
            why = stacks.available(cls, self.ctx.builddir)
            if why:
                self.res.skipped[cls.key] = why
                continue
            entry = self.res.memory.setdefault(cls.key, {
                "label": cls.label, "appstack": cls.appstack, "samples": [], "failures": []})
            log(f"  [{rep + 1}] memory ({app.name}, {workers} workers): {cls.label}")
            stack = cls(self.ctx, app, workers)
            try:
                stack.start()
                stack.wait_ready("/", timeout=self.o.start_timeout)
                wrk.run(stack.url("/"), 2 * workers, 1, 1, self.o.client_cpus)
                pids = stack.all_pids()
                entry["samples"].append({"pss_total_kib": sum(procs.pss_kib(p) for p in pids),
                                         "processes": len(pids)})
                log(f"      PSS {entry['samples'][-1]['pss_total_kib'] / 1024:.1f} MiB in {len(pids)} "
                    f"processes")
            except (RuntimeError, ValueError, OSError) as e:
                entry["failures"].append(f"{type(e).__name__}: {e}"[:1500])
                log(f"      FAILED: {e}")
            finally:
                stack.stop()

    def lifecycle_sample(self, stack):
        t0 = time.monotonic()
        stack.start()
        cold = net.time_to_200("127.0.0.1", stack.port, "/", t0, stack.procs,
                               timeout=self.o.start_timeout)
        # Serve for a while first: RSS after real requests, not after import.
        wrk.run(stack.url("/"), 4, max(1.0, self.o.warmup), 1, self.o.client_cpus)
        workers = stack.worker_pids()
        if not workers:
            raise RuntimeError("no worker process found")
        s = {"cold_start_s": cold,
             "rss_master_kib": procs.rss_kib(stack.master.pid) if stack.master else 0,
             "rss_worker_kib": statistics.median(procs.rss_kib(p) for p in workers),
             "rss_proxy_kib": sum(procs.rss_kib(p) for p in stack.proxy_pids()),
             "pss_total_kib": sum(procs.pss_kib(p) for p in stack.all_pids())}
        t1 = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        s["respawn_s"] = net.time_to_200("127.0.0.1", stack.port, "/", t1, stack.procs,
                                         timeout=self.o.start_timeout)
        log(f"      cold start {s['cold_start_s']:.2f}s  respawn {s['respawn_s']:.3f}s  "
            f"worker RSS {s['rss_worker_kib'] / 1024:.1f} MiB")
        return s


def _verify(stack, case):
    """A fast wrong answer must not count: check status and content once
    (and that a gzip case is answered with gzip)."""
    if case.kind == "ws":
        return          # wsload fails itself without a 101
    if case.kind == "gzip":
        r = subprocess.run(["curl", "-s", "-k", "-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip",
                            "--max-time", "10", stack.url(case.path)], capture_output=True, timeout=20)
        if b"\ncontent-encoding: gzip" not in r.stdout.lower():
            raise RuntimeError(f"GET {case.path} with Accept-Encoding: gzip was not answered with gzip:\n"
                               f"{r.stdout.decode('latin-1')[:500]}")
    status, body = net.curl(stack.url(case.path), timeout=10)
    if status != 200 or case.check not in body:
        raise RuntimeError(f"GET {case.path} answered {status} with {len(body)} bytes "
                           f"not holding the expected content")


def _rotate(seq, n):
    """Each repetition starts with a different stack, so none is always first."""
    n %= len(seq)
    return tuple(seq[n:]) + tuple(seq[:n])


def _ms(seconds):
    return f"{seconds * 1000:8.2f}" if seconds is not None else "     n/a"
