"""What a run measures: the units (a group of stacks serving one app at one
worker count) and their cases, and how long that should take."""
from . import apps, stacks, ws
from .runner import Case, Unit


H2_CONNECTIONS = 8     # h2load connections, 100 streams each
WS_CONNECTIONS = 1000
IO_WORKERS, IO_CONC = 4, 256    # the I/O-bound group: ceiling workers x threads / 10 ms


def plan(o, hello, django, static_paths, mixed=None, sleep10=None):
    units = []
    last = o.workers[-1]

    def concs(group, w):
        return list(o.conc) if group in o.sweep and (w == last or group == "static") else [o.base_conc]

    for w in o.workers:
        if "hello-direct" in o.only:
            units.append(Unit("hello-direct", "hello world direct to the workers", stacks.DIRECT,
                              hello, w, [Case(*hello.paths[0], concs("hello-direct", w))]))
        if "hello-front" in o.only:
            units.append(Unit("hello-front", "hello world via the front", stacks.FRONT,
                              hello, w, [Case(*hello.paths[0], concs("hello-front", w))]))
        if "django" in o.only:
            # The admin CSS is a static file: the worker count cannot change it.
            paths = django.paths if w == last else django.paths[:1]
            units.append(Unit("django", "Django example via the front", stacks.FRONT, django, w,
                              [Case(*p, [o.base_conc]) for p in paths]))
        if "mixed" in o.only:
            rate = round(apps.MIXED_RATE_PER_WORKER * w)
            units.append(Unit("mixed", "95/5 mixed load via the front, fast requests", stacks.FRONT,
                              mixed, w, [Case(f"{rate} req/s (70% busy)", "/", b" ", [64], kind="open", rate=rate),
                                         Case("saturated", "/", b" ", [32], kind="closed")]))
        if "metrics" in o.only and w == last:
            units.append(Unit("metrics", "hello world via the front, metrics on vs off", stacks.METRICS,
                              hello, w, [Case(*hello.paths[0], [o.base_conc])]))
        if "hosts" in o.only and w == last:
            # Equal total workers: a third on each host.
            hw = 3 * max(1, w // 3) if w >= 3 else 3
            units.append(Unit("hosts", f"hello world via the front, {stacks.HOSTS} hosts vs 1 local upstream",
                              stacks.HOSTS_FRONT, hello, hw, [Case(*hello.paths[0], [o.base_conc])]))
        if "vhosts" in o.only and w == last:
            units.append(Unit("vhosts", f"hello world via the front, {stacks.VHOSTS} [site]s vs none",
                              stacks.VHOST, hello, w, [Case(*hello.paths[0], [o.base_conc])]))
    if "tls" in o.only:
        # HTTPS through as many front processes on each side (one unless
        # --front-processes says otherwise), TLS 1.3, ECDSA P-256.
        units.append(Unit("tls", "HTTPS hello world via the front", stacks.TLS_FRONT, hello, last,
                          [Case(*hello.paths[0], [o.base_conc])]))
        (k1, p1, c1), (k100, p100, c100) = static_paths[:2]
        units.append(Unit("tls-static", "static files over TLS from one front process", stacks.TLS_STATIC,
                          hello, 0,
                          [Case(f"HTTPS {k1}", p1, c1, [o.base_conc]),
                           Case(f"HTTPS {k100}", p100, c100, [o.base_conc]),
                           Case(f"new TLS connections/s ({k1}, full handshakes)", p1, c1, [o.base_conc],
                                kind="full"),
                           Case(f"new TLS connections/s ({k1}, resumed by ticket)", p1, c1, [o.base_conc],
                                kind="close"),
                           Case(f"HTTP/2 {k1}, 100 streams per connection", p1, c1, [H2_CONNECTIONS],
                                kind="h2")]))
    if "compress" in o.only:
        lvl = stacks.GZIP_LEVEL
        units.append(Unit("compress", f"gzip (level {lvl}) on the fly via one front process", stacks.GZIP_FRONT,
                          django, last, [Case("Django page, gzip", "/", b"</html>", [o.base_conc], kind="gzip")]))
        units.append(Unit("compress-static", f"static HTML gzipped (level {lvl}) on the fly, one front process",
                          stacks.GZIP_STATIC, hello, 0,
                          [Case("100 KiB HTML, gzip", "/static/" + apps.HTML_FILE, b"<html>", [o.base_conc],
                                kind="gzip")]))
    if "websocket" in o.only:
        units.append(Unit("websocket", f"WebSocket echo, {WS_CONNECTIONS} connections, {ws.MESSAGE}-byte "
                          "messages, one front process", stacks.WS, hello, 0,
                          [Case(f"echo, {WS_CONNECTIONS} connections", "/ws", b"", [WS_CONNECTIONS], kind="ws")]))
    if "io" in o.only:
        ceiling = IO_WORKERS * stacks.IO_THREADS * 100
        units.append(Unit("io", f"I/O-bound app (10 ms per request) direct, {stacks.IO_THREADS} threads per "
                          f"worker, ceiling {ceiling} req/s", stacks.THREADED, sleep10, IO_WORKERS,
                          [Case(*sleep10.paths[0], [IO_CONC])]))
    if "static" in o.only:
        first, *rest = static_paths
        units.append(Unit("static", "static files from the front", stacks.STATIC, hello, 0,
                          [Case(*first, concs("static", 0))] +
                          [Case(*p, [o.base_conc]) for p in rest]))
    return units


def estimate(o, units):
    mixed_kinds = ("open", "closed")
    cases = sum(len(u.classes) * sum(len(c.concs) for c in u.cases if c.kind not in mixed_kinds) for u in units)
    mixed = sum(len(u.classes) * sum(len(c.concs) for c in u.cases if c.kind in mixed_kinds) for u in units)
    starts = sum(len(u.classes) for u in units)
    per_rep = cases * (o.duration + 0.3) + mixed * (o.mixed_duration + 1) + starts * (o.warmup + 2.5)
    if "lifecycle" in o.only:
        per_rep += len(stacks.FRONT) * 6
    if "memory" in o.only:
        per_rep += len(stacks.MEMORY) * 6
    return o.reps * per_rep
