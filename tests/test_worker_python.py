"""The embedded interpreter: always the system Python (never one from PATH
or PYTHONHOME), optionally through a virtualenv; [app] chdir, pythonpath and
env; PYTHONPATH and the other PYTHON* variables as CPython's rules say."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import APPS, free_port
from workerutil import Worker, request, worker_config

HOSTILE_ENV = {"PYTHONHOME": "/nonexistent/pyhome", "PYTHONPATH": "/nonexistent/pypath",
               "PATH": "/root/.pyenv/shims:/root/.pyenv/bin:" + os.environ.get("PATH", "")}


def sysinfo(tmpdir, app_extra="", env=None):
    port = free_port()
    with Worker(tmpdir, port, worker_config(tmpdir, port, app_extra=app_extra), env=env) as w:
        status, _, body = request(port, path="/sysinfo")
        assert status == 200, w.log()
        return json.loads(body)


@pytest.fixture(scope="module")
def venvs():
    d = tempfile.mkdtemp(prefix="as-venv-", dir="/tmp")
    plain, system = os.path.join(d, "plain"), os.path.join(d, "system")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", plain], check=True)
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", system],
                   check=True)
    yield plain, system
    shutil.rmtree(d, ignore_errors=True)


def test_system_python_despite_environment(tmpdir_short):
    info = sysinfo(tmpdir_short, env=HOSTILE_ENV)
    assert info["prefix"] == "/usr" and info["base_prefix"] == "/usr"
    assert not any(".pyenv" in p or "pyhome" in p for p in info["path"])
    assert info["django"]                       # Debian's dist-packages are there
    assert info["path"][0] == APPS              # chdir first
    assert info["cwd"] == APPS
    # Genuine stdio, and the app still sees the environment it was given.
    assert "TextIOWrapper" in info["stdout"]
    assert info["env"]["PYTHONHOME"] == "/nonexistent/pyhome"


def test_pythonpath_from_environment_after_app_pythonpath(tmpdir_short):
    """PYTHONPATH (a systemd Environment= line) counts, after [app]
    pythonpath and before the standard library, as gunicorn's --pythonpath
    and CPython order them."""
    extra = os.path.join(tmpdir_short, "lib")
    os.mkdir(extra)
    env_dir = os.path.join(tmpdir_short, "envlib")
    os.mkdir(env_dir)
    for d, who in ((extra, "config"), (env_dir, "environment")):
        with open(os.path.join(d, "whichlib.py"), "w") as f:
            f.write(f"WHO = {who!r}\n")
    with open(os.path.join(env_dir, "onlyenv.py"), "w") as f:
        f.write("X = 1\n")
    info = sysinfo(tmpdir_short, app_extra=f"pythonpath = {extra}",
                   env={"PYTHONPATH": env_dir, "PYTHONDONTWRITEBYTECODE": "1"})
    path = info["path"]
    assert path[:3] == [APPS, extra, env_dir], path
    stdlib = path.index("/usr/lib/python3.11")
    assert path.index(env_dir) < stdlib
    assert info["dont_write_bytecode"] is True
    assert info["whichlib"] == "config" and info["onlyenv"] is True


def test_venv_without_system_site_packages(tmpdir_short, venvs):
    plain, _ = venvs
    info = sysinfo(tmpdir_short, app_extra=f"virtualenv = {plain}", env=HOSTILE_ENV)
    assert info["prefix"] == plain and info["base_prefix"] == "/usr"
    assert any(p.startswith(plain) and p.endswith("site-packages") for p in info["path"])
    assert not info["django"]
    assert not any("dist-packages" in p for p in info["path"])


def test_venv_with_system_site_packages(tmpdir_short, venvs):
    _, system = venvs
    info = sysinfo(tmpdir_short, app_extra=f"virtualenv = {system}")
    assert info["prefix"] == system
    assert info["django"]
    site = [i for i, p in enumerate(info["path"]) if p.startswith(system)]
    dist = [i for i, p in enumerate(info["path"]) if "dist-packages" in p]
    assert site and dist and site[0] < dist[0]  # the venv wins over the system


def test_env_and_pythonpath(tmpdir_short):
    extra = os.path.join(tmpdir_short, "lib")
    os.mkdir(extra)
    info = sysinfo(tmpdir_short, app_extra=f"pythonpath = {extra}\nenv = APP_MODE=testing\nenv = EMPTY=")
    assert info["env"]["APP_MODE"] == "testing" and info["env"]["EMPTY"] == ""
    assert info["path"][:2] == [APPS, extra]
