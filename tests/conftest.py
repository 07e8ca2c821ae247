"""Shared fixtures: where the built programs are, free ports, temp configs.

Tests drive the real programs over real sockets; nothing here imitates them.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILDDIR = os.environ.get("APPSTACK_BUILDDIR", SRCDIR)
APPS = os.path.join(SRCDIR, "tests", "apps")
EXAMPLES = os.path.join(SRCDIR, "examples")
sys.path.insert(0, os.path.join(SRCDIR, "tests"))


def prog(name):
    """Absolute path of a built program (appstackd, supctl, ...)."""
    path = os.path.join(BUILDDIR, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is not built (run make first)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def write_config(directory, text):
    path = os.path.join(directory, "appstack.ini")
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


@pytest.fixture(scope="session")
def generated_locales(tmp_path_factory):
    """A LOCPATH with de_DE and tr_TR (UTF-8) made by localedef:
    the machine itself may have no locale but C (no root needed for this)."""
    if not shutil.which("localedef") or not os.path.isdir("/usr/share/i18n/locales"):
        pytest.skip("localedef and the locales package are needed to generate locales")
    d = tmp_path_factory.mktemp("locales")
    for name in ("de_DE", "tr_TR"):
        subprocess.run(["localedef", "-i", name, "-f", "UTF-8", str(d / f"{name}.UTF-8")], check=True,
                       capture_output=True, timeout=120)
    return str(d)


@pytest.fixture
def tmpdir_short():
    """A short temp dir: unix socket paths must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="as-", dir="/tmp") as d:
        yield d


@pytest.fixture
def port():
    return free_port()


@pytest.fixture(params=[1, 2], ids=["1proc", "2procs"])
def proxy_workers(request, monkeypatch):
    """Runs a proxy test with `workers = 1`, then with `workers = 2`: the
    configs proxyutil writes (proxy_config, TlsProxy) take it."""
    import proxyutil
    monkeypatch.setattr(proxyutil, "WORKERS", request.param)
    return request.param
