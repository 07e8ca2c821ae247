"""Command line of bench/run, bench/hello and bench/static."""
import argparse
import datetime
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time

from . import apps, deps, docs, host, plan, procs, report, stacks
from .runner import Results, Runner, log

GROUPS = ("hello-direct", "hello-front", "static", "django", "mixed", "hosts", "lifecycle", "vhosts", "tls",
          "memory", "compress", "websocket", "metrics", "io")
MEMORY_WORKERS = 8      # the pool whose memory the "memory" group compares


def _ints(text):
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def _groups(text):
    out = [g for g in text.split(",") if g]
    bad = [g for g in out if g not in GROUPS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown group {bad[0]!r}; known: {', '.join(GROUPS)}")
    return out


def parse_args(argv, prog, defaults):
    p = argparse.ArgumentParser(prog=prog, description=defaults.pop("description"))
    p.add_argument("--builddir", help="where appstackd, appstack-worker, appstack-proxy are "
                   "(default: $APPSTACK_BUILDDIR, else ./ when they are there, else "
                   "<source>/build, which ./bootstrap makes when it is missing)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 4 workers only, 1 repetition of 1 s per case, no docs update")
    p.add_argument("--workers", type=_ints, help="worker counts (default 2,4; --quick 4)")
    p.add_argument("--conc", type=_ints, default=[16, 64, 256, 1024],
                   help="connections of the concurrency sweep (default 16,64,256,1024)")
    p.add_argument("--base-conc", type=int, default=64,
                   help="connections for the cases outside the sweep (default 64)")
    p.add_argument("--sweep", type=_groups, default=["hello-front", "static"],
                   help="groups measured over the whole sweep, at the last worker count "
                   "(default hello-front,static)")
    p.add_argument("--only", type=_groups, default=list(GROUPS),
                   help=f"groups to run (default all: {','.join(GROUPS)})")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    p.add_argument("--duration", type=int, help="seconds per case (default 3; --quick 1)")
    p.add_argument("--mixed-duration", type=int, help="seconds per case of the mixed group, "
                   "whose p99 needs more requests (default 10; --quick 2)")
    p.add_argument("--warmup", type=int, help="seconds of discarded load after each start, "
                   "0 for none (default 1; --quick 0)")
    p.add_argument("--pin", choices=("split", "none"), default="split",
                   help="split: wrk on CPU 0, every server process on the other CPUs "
                   "(default); none: let the scheduler place everything")
    p.add_argument("--threads", type=int, help="wrk threads (default: 1 with --pin split, "
                   "else 2)")
    p.add_argument("--front-processes", type=int, default=1,
                   help="appstack-proxy's workers in every row, and nginx's worker_processes in the "
                   "tls rows (default 1)")
    p.add_argument("--gunicorn-args", default="", help="extra gunicorn options, given as "
                   "--gunicorn-args=\"--preload\" (default none)")
    p.add_argument("--uwsgi-args", default="", help="extra uWSGI options, given as "
                   "--uwsgi-args=\"--lazy-apps\" (default none)")
    p.add_argument("--start-timeout", type=float,
                   help="seconds a stack may take to answer 200 (default 60; --quick 20)")
    p.add_argument("--out", help="results directory (default bench/results/<date-time>)")
    p.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                   help="update docs/performance.md and its plots (default: only a full bench/run "
                   "of all groups)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and the time it should take, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the temp dir with configs and logs")
    p.add_argument("--tmp", default="/tmp", help="where the run's temp dir goes; keep it short, "
                   "unix socket paths are limited to 108 bytes (default /tmp)")
    p.set_defaults(**defaults)
    o = p.parse_args(argv)
    o.workers = o.workers or ([4] if o.quick else [2, 4])
    o.reps = o.reps or (1 if o.quick else 3)
    o.duration = o.duration or (1 if o.quick else 3)
    o.mixed_duration = o.mixed_duration or (2 if o.quick else 10)
    o.warmup = o.warmup if o.warmup is not None else (0 if o.quick else 1)
    o.start_timeout = o.start_timeout or (20.0 if o.quick else 60.0)
    if o.docs is None:
        # Only a whole, full run may replace the published figures.
        o.docs = (defaults.get("docs_default", False) and not o.quick
                  and set(o.only) == set(GROUPS))
    return o


def pinning(o):
    ncpu = len(os.sched_getaffinity(0))
    if o.pin == "split" and ncpu >= 2:
        cpus = sorted(os.sched_getaffinity(0))
        o.client_cpus = str(cpus[0])
        o.server_cpus = ",".join(str(c) for c in cpus[1:])
    else:
        o.pin, o.client_cpus, o.server_cpus = "none", None, None
    o.threads = o.threads or (1 if o.pin == "split" else 2)
    # How many CPUs wrk can keep busy: its threads, on the CPUs it may use.
    o.client_capacity = min(o.threads, 1 if o.pin == "split" else ncpu)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


# ---- main -------------------------------------------------------------------------

def main(argv, prog, **defaults):
    o = parse_args(argv, prog, defaults)
    procs.install_cleanup()
    nofile = raise_nofile()
    if max(o.conc + [o.base_conc]) + 64 > nofile:
        log(f"bench: open files limited to {nofile}; lower --conc")
        return 2
    still = deps.ensure(log)
    if set(still) - {"gnuplot-nox"}:
        log(f"bench: cannot run without: {' '.join(still)}")
        return 2
    pinning(o)
    stacks.EXTRA.update(gunicorn=shlex.split(o.gunicorn_args), uwsgi=shlex.split(o.uwsgi_args))
    builddir = host.find_builddir(o)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = tempfile.mkdtemp(prefix="asb-", dir=o.tmp)
    outdir = os.path.abspath(os.path.join(workdir, "dry-run") if o.dry_run else o.out or
                             os.path.join(apps.BENCH, "results", stamp + ("-quick" if o.quick else "")))
    rawdir = os.path.join(outdir, "wrk")
    os.makedirs(rawdir, exist_ok=True)
    try:
        return run(o, builddir, outdir, rawdir, workdir)
    finally:
        procs.stop_all()
        if o.keep:
            log(f"bench: configs and logs kept in {workdir}")
        else:
            _keep_logs(workdir, outdir)
            shutil.rmtree(workdir, ignore_errors=True)


LOG_TAIL = 64 << 10     # access logs grow by megabytes per case: keep the end


def _keep_logs(workdir, outdir):
    """The servers' configs and the end of their logs explain failures: keep
    them with the results."""
    dest = os.path.join(outdir, "logs")
    for root, _, files in os.walk(workdir):
        for name in files:
            if not name.endswith((".log", ".ini", ".conf")) or "files" in root:
                continue
            src = os.path.join(root, name)
            path = os.path.join(dest, os.path.relpath(src, workdir))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(src, "rb") as f, open(path, "wb") as out:
                f.seek(max(0, os.fstat(f.fileno()).st_size - LOG_TAIL))
                out.write(f.read())


def run(o, builddir, outdir, rawdir, workdir):
    files_dir, static_paths = apps.static_files(workdir)
    hello = apps.hello(files_dir)
    need_django = {"django", "lifecycle", "memory", "compress"} & set(o.only)
    django = apps.django(workdir, log) if need_django else None
    units = plan.plan(o, hello, django, static_paths, apps.mixed(), apps.sleep10())
    ctx = stacks.Context(builddir, workdir, o.server_cpus, o.front_processes)
    results = Results()
    runner = Runner(o, ctx, results, rawdir)
    pin = (f"wrk -t{o.threads} on CPU {o.client_cpus}, servers on CPU {o.server_cpus}"
           if o.pin == "split" else f"no pinning, wrk -t{o.threads}")
    log(f"bench: appstack from {builddir}; {pin}; {o.reps} repetition(s) of "
        f"{o.duration:g}s per case; about {plan.estimate(o, units) / 60:.1f} min")
    if o.dry_run:
        for u in units:
            log(f"  {u.title} ({u.workers} workers): " + "; ".join(
                f"{c.label} c={','.join(map(str, c.concs))}" for c in u.cases) +
                " | " + ", ".join(cls.label for cls in u.classes))
        return 0
    t_start = time.monotonic()
    try:
        for rep in range(o.reps):
            for unit in units:
                runner.run_unit(unit, rep)
            if "lifecycle" in o.only:
                runner.run_lifecycle(stacks.FRONT, django, rep)
            if "memory" in o.only:
                runner.run_memory(stacks.MEMORY, django, MEMORY_WORKERS, rep)
    except (KeyboardInterrupt, SystemExit):
        # A long run stopped by hand still reports what it measured.
        procs.stop_all()
        log("bench: interrupted; the results below are partial")
        o.docs = False
        _finish_timed(o, outdir, results, builddir, django, workdir, t_start, partial=True)
        raise
    return _finish_timed(o, outdir, results, builddir, django, workdir, t_start)


def _finish_timed(o, outdir, results, builddir, django, workdir, t_start, partial=False):
    info = host.meta(o, builddir, django)
    info["elapsed_s"] = round(time.monotonic() - t_start)
    info["workdir"] = workdir
    info["partial"] = partial
    return finish(o, outdir, results, info)


def finish(o, outdir, results, info):
    rows = report.summarize(results)
    life = report.summarize_lifecycle(results)
    mem = report.summarize_memory(results)
    text = report.text_table(report.HEAD, report.table_rows(rows)) if rows else ""
    if life:
        text += "\n\n" + report.text_table(report.LIFE_HEAD, report.life_rows(life))
    if mem:
        text += "\n\n" + report.text_table(report.memory_head(MEMORY_WORKERS), report.memory_rows(mem))
    problems = report.failures(rows, life, results.skipped, mem)
    notes = "\n".join(docs.NOTES)
    print(text + "\n\n" + notes + ("\n\nProblems:\n  " + "\n  ".join(problems) if problems else ""))
    report.write_json(os.path.join(outdir, "results.json"), info, rows, life, results, mem)
    report.write_csv(os.path.join(outdir, "results.csv"), results)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(text + "\n")
    plots = report.plot(rows, outdir)
    md = docs.markdown(info, rows, life, problems, plots, mem, MEMORY_WORKERS)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(md)
    _link_latest(outdir)
    log(f"bench: results in {outdir} ({info['elapsed_s'] / 60:.1f} min)")
    if o.docs:
        docs.update(md, plots)
        log("bench: docs/performance.md updated")
    return 0


def _link_latest(outdir):
    if os.path.dirname(outdir) != os.path.join(apps.BENCH, "results"):
        return      # a directory of the user's choosing: leave its parent alone
    link = os.path.join(os.path.dirname(outdir), "latest")
    try:
        if os.path.islink(link):
            os.unlink(link)
        if not os.path.exists(link):
            os.symlink(os.path.basename(outdir), link)
    except OSError as e:
        log(f"bench: cannot link {link}: {e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], "bench", description="appstack benchmark", docs_default=True))
