"""The machine side of a run: where the built programs are (building them
on a fresh clone) and what to record about the host and the peers."""
import datetime
import os
import platform
import re
import subprocess

from . import apps
from .runner import log

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
