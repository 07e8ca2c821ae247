"""The Debian packages the benchmark needs, installed with apt-get when missing."""
import os
import shutil
import subprocess

# (how to tell it is there, package that provides it)
NEEDS = (
    ("wrk", "wrk"),
    ("nginx", "nginx-light"),
    ("gunicorn", "gunicorn"),
    ("uwsgi", "uwsgi"),
    ("/usr/lib/uwsgi/plugins/python3_plugin.so", "uwsgi-plugin-python3"),
    ("curl", "curl"),
    ("h2load", "nghttp2-client"),
    ("openssl", "openssl"),
    ("taskset", "util-linux"),
    ("gnuplot", "gnuplot-nox"),
    ("python3:django", "python3-django"),
)


def _present(what):
    if what.startswith("python3:"):
        r = subprocess.run(["/usr/bin/python3", "-c", f"import {what[8:]}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0
    if what.startswith("/"):
        return os.path.exists(what)
    return shutil.which(what, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") is not None


def missing():
    return [pkg for what, pkg in NEEDS if not _present(what)]


def ensure(log):
    """Installs what is missing. Returns the packages still missing."""
    pkgs = missing()
    if not pkgs:
        return []
    if os.geteuid() != 0:
        log(f"bench: missing packages, run as root: apt-get install {' '.join(pkgs)}")
        return pkgs
    log(f"bench: installing {' '.join(pkgs)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + pkgs
    if subprocess.run(cmd, env=env).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], env=env)
        subprocess.run(cmd, env=env)
    return missing()
