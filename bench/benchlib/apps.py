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

    @property
    def wsgi_module(self):
        return self.module.split(":")[0]

    @property
    def callable(self):
        return self.module.partition(":")[2] or "application"


def hello(static_dir):
    return App("hello", os.path.join(BENCH, "apps"), "hello:application",
               static_dir=static_dir,
               paths=[("hello", "/", b"Hello, World!")])


def _example_site():
    """(chdir, settings module, wsgi module) of the repository's Django
    example when it is there, else of the benchmark's own small site."""
    mysite = os.path.join(SRCDIR, "examples", "mysite")
    if os.path.exists(os.path.join(mysite, "manage.py")):
        return mysite, "mysite.settings", "mysite.wsgi"
    own = os.path.join(BENCH, "apps", "benchsite")
    return own, "benchsite.settings", "benchsite.wsgi"


def django(workdir):
    """The Django site with its static files collected under WORKDIR."""
    chdir, settings, wsgi = _example_site()
    static_root = os.path.join(workdir, "django-static")
    env = {"DJANGO_SETTINGS_MODULE": settings,
           "BENCH_STATIC_ROOT": static_root,
           "BENCH_DB": os.path.join(workdir, "django.sqlite3")}
    static_root = _collectstatic(chdir, env, static_root)
    css = os.path.join(static_root, "admin", "css", "base.css")
    with open(css, "rb") as f:
        css_head = f.read(64)
    return App("django", chdir, wsgi + ":application", env=env, static_dir=static_root,
               paths=[("django page", "/", b"</html>"),
                      ("admin css", "/static/admin/css/base.css", css_head)])


def _collectstatic(chdir, env, static_root):
    """Runs collectstatic; returns the directory the files landed in (a site
    may hard-code STATIC_ROOT and ignore ours)."""
    full_env = dict(os.environ, **env)
    subprocess.run(["/usr/bin/python3", "manage.py", "collectstatic", "--noinput", "-v0"],
                   cwd=chdir, env=full_env, check=True)
    r = subprocess.run(
        ["/usr/bin/python3", "-c", "from django.conf import settings; print(settings.STATIC_ROOT)"],
        cwd=chdir, env=dict(full_env, PYTHONPATH=chdir), check=True,
        stdout=subprocess.PIPE, text=True)
    return r.stdout.strip() or static_root


STATIC_FILES = (("static 1KiB", "1k.bin", 1 << 10),
                ("static 100KiB", "100k.bin", 100 << 10),
                ("static 10MiB", "10m.bin", 10 << 20))


def static_files(workdir):
    """Writes the 1 KiB, 100 KiB and 10 MiB files; returns (dir, paths)."""
    d = os.path.join(workdir, "files")
    os.makedirs(d, exist_ok=True)
    paths = []
    for label, name, size in STATIC_FILES:
        data = os.urandom(size)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        paths.append((label, "/static/" + name, data[:64]))
    return d, paths
