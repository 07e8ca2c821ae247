"""The applications and files the benchmark serves."""
import os
import subprocess
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRCDIR = os.path.dirname(BENCH)


@dataclass
class App:
    name: str
    chdir: str                      # cwd of the workers, on sys.path
    module: str                     # "pkg.mod:callable"
    env: dict = field(default_factory=dict)
    static_dir: str = ""            # served at /static/ by every front
    paths: list = field(default_factory=list)   # (label, path, check) to measure


def hello(static_dir):
    return App("hello", os.path.join(BENCH, "apps"), "hello:application",
               static_dir=static_dir,
               paths=[("hello", "/", b"Hello, World!")])


# 95 % of requests take 1 ms, 5 % take 200 ms (bench/apps/mixed.py): at this
# many requests a second per worker the workers are about 70 % busy.
MIXED_RATE_PER_WORKER = 0.7 / (0.95 * 0.0012 + 0.05 * 0.2005)


def mixed():
    return App("mixed", os.path.join(BENCH, "apps"), "mixed:application",
               paths=[("mixed", "/", b" ")])


def sleep10():
    return App("sleep10", os.path.join(BENCH, "apps"), "sleep10:application",
               paths=[("sleep 10 ms", "/", b"slept 10 ms")])


def _site_env(workdir, settings):
    # The example reads MYSITE_*, the benchmark's own site BENCH_*.
    static_root = os.path.join(workdir, "django-static")
    db = os.path.join(workdir, "django.sqlite3")
    return {"DJANGO_SETTINGS_MODULE": settings,
            "MYSITE_STATIC_ROOT": static_root, "MYSITE_DB": db,
            "BENCH_STATIC_ROOT": static_root, "BENCH_DB": db}


def _django(chdir, env, argv, capture=False):
    full = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    full.update(env, PYTHONPATH=chdir)
    return subprocess.run(["/usr/bin/python3"] + argv, cwd=chdir, env=full,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _prepare(chdir, env):
    """collectstatic + migrate; returns the static root, or raises."""
    for argv in (["-m", "django", "collectstatic", "--noinput", "-v0"],
                 ["-m", "django", "migrate", "--noinput", "-v0"]):
        r = _django(chdir, env, argv)
        if r.returncode:
            raise RuntimeError(f"{' '.join(argv[2:4])} failed:\n{r.stderr[-1500:]}")
    # A site may hard-code STATIC_ROOT and ignore ours.
    r = _django(chdir, env, ["-c", "import django; django.setup(); "
                             "from django.conf import settings; print(settings.STATIC_ROOT)"],
                capture=True)
    return r.stdout.strip() or env["MYSITE_STATIC_ROOT"]


def django(workdir, log=print):
    """The repository's example site (examples/mysite) when it loads, else
    the benchmark's own small site, with static files collected and the
    database migrated under WORKDIR."""
    sites = [(os.path.join(SRCDIR, "examples", "mysite"), "mysite"),
             (os.path.join(BENCH, "apps", "benchsite"), "benchsite")]
    for chdir, pkg in sites:
        if not os.path.exists(os.path.join(chdir, pkg, "wsgi.py")):
            continue
        env = _site_env(workdir, pkg + ".settings")
        try:
            static_root = _prepare(chdir, env)
        except RuntimeError as e:
            log(f"bench: Django site {chdir} unusable, trying the next one: {e}")
            continue
        with open(os.path.join(static_root, "admin", "css", "base.css"), "rb") as f:
            css_head = f.read(64)
        return App("django", chdir, pkg + ".wsgi:application", env=env, static_dir=static_root,
                   paths=[("page", "/", b"</html>"),
                          ("admin CSS", "/static/admin/css/base.css", css_head)])
    raise RuntimeError("no usable Django site")


STATIC_FILES = (("1 KiB", "1k.bin", 1 << 10),
                ("100 KiB", "100k.bin", 100 << 10),
                ("10 MiB", "10m.bin", 10 << 20))


HTML_FILE = "100k.html"


def _html(size):
    """A page of text as compressible as real HTML (about 4:1 with gzip),
    the same on every run."""
    words = [("".join(chr(97 + (i * 7 + j * 3) % 26) for j in range(2 + i % 9))) for i in range(700)]
    out, i = ["<!doctype html>\n<html><head><title>bench</title></head><body>\n"], 0
    while sum(map(len, out)) < size - 32:
        out.append(f'<p class="c{i % 13}">' + " ".join(words[(i * 31 + k * 17) % 700] for k in range(12)) + "</p>\n")
        i += 1
    return ("".join(out) + "</body></html>\n").encode()


def static_files(workdir):
    """Writes the 1 KiB, 100 KiB and 10 MiB files (and the 100 KiB HTML page
    of the compression rows); returns (dir, paths)."""
    d = os.path.join(workdir, "files")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, HTML_FILE), "wb") as f:
        f.write(_html(100 << 10))
    paths = []
    for label, name, size in STATIC_FILES:
        data = os.urandom(size)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        paths.append((label, "/static/" + name, data[:64]))
    return d, paths
