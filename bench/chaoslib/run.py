"""One scenario against one stack: start it, load it, disturb it, count."""
import time

from benchlib import net, runner

from .load import Probe, Wrk
from .stacks import SKIPPED, NotSupported

log = runner.log


def run(ctx, cls, app, workers, sc, o):
    """Returns a result dict (with 'skipped' or 'failed' when it could not run)."""
    stack = cls(ctx, app, workers)
    stack.max_requests = sc.max_requests
    stack.graceful_timeout = o.graceful_timeout
    stack.kill_min_age = o.kill_min_age
    stack.options = getattr(o, "appstack_option", [])
    out = {"stack": cls.key, "label": cls.label, "app": app.name, "scenario": sc.key,
           "title": sc.label, "events": 0, "event_errors": []}
    path = app.paths[0][1]
    try:
        stack.start()
        stack.wait_ready(path, timeout=o.start_timeout)
        if o.warmup:
            Wrk(stack.url(path), o.conc, o.warmup, o.threads).result()
        probe = Probe("127.0.0.1", stack.port, paths=(path,), conns=o.probe_conns)
        load = Wrk(stack.url(path), o.conc, o.duration, o.threads)
        try:
            _disturb(stack, sc, o.duration, out)
        except NotSupported as e:
            load.stop()
            probe.stop()
            out["skipped"] = str(e)
            return out
        w = load.result()
        p = probe.stop()
        # The stack must still serve once the disturbance is over.
        out["alive_after"] = net.curl(stack.url(path), timeout=10)[0] == 200
    except Exception as e:      # one broken stack must not end the whole run
        out["failed"] = f"{type(e).__name__}: {e}"
        log(f"chaos: {cls.label} / {sc.key}: {out['failed']}")
        return out
    finally:
        stack.stop()
    out.update(_combine(w, p))
    return out


def _disturb(stack, sc, duration, out):
    """Runs SC's events every period until DURATION seconds have passed."""
    t0 = time.monotonic()
    end = t0 + duration
    n = 0
    if not sc.period:
        time.sleep(duration)
        return
    while True:
        due = t0 + (n + 1) * sc.period
        if due >= end:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        err = sc.act(stack, n)
        n += 1
        if err == SKIPPED:
            out["events_skipped"] = out.get("events_skipped", 0) + 1
        elif err:
            out["event_errors"].append(f"{time.monotonic() - t0:.2f}s: {err}")
    out["events"] = n - out.get("events_skipped", 0)
    time.sleep(max(0.0, end - time.monotonic()))


def _combine(w, p):
    """wrk's GET counts plus the probe's GET/HEAD counts."""
    by_status = dict(w["by_status"])
    for (_, status), n in p["by_status"].items():
        by_status[status] = by_status.get(status, 0) + n
    errs = {k: w["err_" + k] + p["errors"][k] for k in p["errors"]}
    non2xx = sum(n for s, n in by_status.items() if not 200 <= s < 300)
    return {"requests": w["requests"] + w["sock_errors"] + p["requests"], "non2xx": non2xx,
            "by_status": by_status, "sock": errs, "sock_errors": sum(errs.values()),
            "head_requests": sum(n for (m, _), n in p["by_status"].items() if m == "HEAD"),
            "p99": w["p99"], "probe_p99": p["p99"], "rps": w["rps"],
            "probe_failures": p["failures"][:10]}
