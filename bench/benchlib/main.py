"""Command line of bench/run, bench/hello and bench/static."""
import argparse
import datetime
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from . import apps, deps, docs, procs, report, stacks
from .runner import Case, Results, Runner, Unit, log

GROUPS = ("hello-direct", "hello-front", "static", "django", "lifecycle")


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
    p.add_argument("--warmup", type=int, help="seconds of discarded load after each start, "
                   "0 for none (default 1; --quick 0)")
    p.add_argument("--pin", choices=("split", "none"), default="split",
                   help="split: wrk on CPU 0, every server process on the other CPUs "
                   "(default); none: let the scheduler place everything")
    p.add_argument("--threads", type=int, help="wrk threads (default: 1 with --pin split, "
                   "else 2)")
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


# ---- build directory ----------------------------------------------------------

PROGRAMS = ("appstackd", "appstack-worker", "appstack-proxy")


def _has_programs(d):
    return d and any(os.access(os.path.join(d, p), os.X_OK) for p in PROGRAMS)


def find_builddir(o):
    if o.builddir:
        return os.path.abspath(o.builddir)
    env = os.environ.get("APPSTACK_BUILDDIR")
    if env:
        return os.path.abspath(env)
    default = os.path.join(apps.SRCDIR, "build")
    for d in (os.getcwd(), default):
        if _has_programs(d):
            return d
    return build(default)


def build(d):
    """A fresh clone: the project's bootstrap installs the build's packages,
    configures and builds into D."""
    log(f"bench: no built appstack found, running ./bootstrap to build it in {d}")
    r = subprocess.run([os.path.join(apps.SRCDIR, "bootstrap")],
                       env=dict(os.environ, APPSTACK_BUILDDIR=d), cwd=apps.SRCDIR)
    if r.returncode != 0:
        log("bench: the build failed; the appstack rows will be missing")
    return d


# ---- plan -----------------------------------------------------------------------

def plan(o, hello, django, static_paths):
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
    if "static" in o.only:
        first, *rest = static_paths
        units.append(Unit("static", "static files from the front", stacks.STATIC, hello, 0,
                          [Case(*first, concs("static", 0))] +
                          [Case(*p, [o.base_conc]) for p in rest]))
    return units


def estimate(o, units):
    cases = sum(len(u.classes) * sum(len(c.concs) for c in u.cases) for u in units)
    starts = sum(len(u.classes) for u in units)
    per_rep = cases * (o.duration + 0.3) + starts * (o.warmup + 2.5)
    if "lifecycle" in o.only:
        per_rep += len(stacks.FRONT) * 6
    return o.reps * per_rep


# ---- meta -----------------------------------------------------------------------

def _version(argv, number=True):
    """First line of ARGV's output, or just the version number in it."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    line = r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
    m = re.search(r"\d+\.\d+(?:\.\d+)?", line) if number else None
    return m.group(0) if m else line


def meta(o, builddir, django_app):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
        "commit": _version(["git", "-C", apps.SRCDIR, "describe", "--always", "--dirty"], False),
        "builddir": builddir,
        "pin": o.pin, "client_cpus": o.client_cpus, "server_cpus": o.server_cpus,
        "wrk_threads": o.threads, "reps": o.reps, "duration_s": o.duration,
        "warmup_s": o.warmup, "workers": o.workers, "conc": o.conc, "base_conc": o.base_conc,
        "quick": o.quick, "gunicorn_args": o.gunicorn_args, "uwsgi_args": o.uwsgi_args,
        "django_site": django_app.chdir if django_app else None,
        "versions": {
            "appstack": _version([os.path.join(builddir, "appstackd"), "--version"]),
            "nginx": _version(["nginx", "-v"]),
            "gunicorn": _version(["/usr/bin/python3", "-m", "gunicorn", "--version"]),
            "uwsgi": _version(["uwsgi", "--version"]),
            "wrk": _version(["wrk", "-v"]),
            "python": _version(["/usr/bin/python3", "--version"]),
            "django": _version(["/usr/bin/python3", "-c", "import django; print(django.get_version())"]),
        },
    }


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
    builddir = find_builddir(o)
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
    need_django = {"django", "lifecycle"} & set(o.only)
    django = apps.django(workdir, log) if need_django else None
    units = plan(o, hello, django, static_paths)
    ctx = stacks.Context(builddir, workdir, o.server_cpus)
    results = Results()
    runner = Runner(o, ctx, results, rawdir)
    pin = (f"wrk -t{o.threads} on CPU {o.client_cpus}, servers on CPU {o.server_cpus}"
           if o.pin == "split" else f"no pinning, wrk -t{o.threads}")
    log(f"bench: appstack from {builddir}; {pin}; {o.reps} repetition(s) of "
        f"{o.duration:g}s per case; about {estimate(o, units) / 60:.1f} min")
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
    except (KeyboardInterrupt, SystemExit):
        # A long run stopped by hand still reports what it measured.
        procs.stop_all()
        log("bench: interrupted; the results below are partial")
        o.docs = False
        _finish_timed(o, outdir, results, builddir, django, workdir, t_start, partial=True)
        raise
    return _finish_timed(o, outdir, results, builddir, django, workdir, t_start)


def _finish_timed(o, outdir, results, builddir, django, workdir, t_start, partial=False):
    info = meta(o, builddir, django)
    info["elapsed_s"] = round(time.monotonic() - t_start)
    info["workdir"] = workdir
    info["partial"] = partial
    return finish(o, outdir, results, info)


def finish(o, outdir, results, info):
    rows = report.summarize(results)
    life = report.summarize_lifecycle(results)
    text = report.text_table(report.HEAD, report.table_rows(rows)) if rows else ""
    if life:
        text += "\n\n" + report.text_table(report.LIFE_HEAD, report.life_rows(life))
    problems = report.failures(rows, life, results.skipped)
    notes = "\n".join(docs.NOTES)
    print(text + "\n\n" + notes + ("\n\nProblems:\n  " + "\n  ".join(problems) if problems else ""))
    report.write_json(os.path.join(outdir, "results.json"), info, rows, life, results)
    report.write_csv(os.path.join(outdir, "results.csv"), results)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(text + "\n")
    plots = report.plot(rows, outdir)
    md = docs.markdown(info, rows, life, problems, plots)
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
