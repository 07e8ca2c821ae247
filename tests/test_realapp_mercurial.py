"""Mercurial's stock hgweb.wsgi (Debian's mercurial), unchanged but for the
repository path its comments say to set, served by appstack directly and
through appstack-proxy: clone (plain and streaming), pull and push of a
repository with a few hundred commits and a binary of several MB, checked
by hash. Mercurial touches sys.stdout.buffer at import and hides import
errors behind its lazy importer: it needs a worker that is a real Python."""
import hashlib
import os
import subprocess

import pytest

from conftest import free_port, prog, wait_for, write_config
from proxyutil import Proxy
from supervisorutil import ENV, Supervisor

HGWEB = "/usr/share/doc/mercurial-common/examples/hgweb.wsgi"
HGENV = dict(os.environ, HGPLAIN="1", HGRCPATH=os.devnull, HGUSER="appstack test <t@example.com>")
COMMITS = 300
BIG = 6 * 1024 * 1024


def hg(*args, cwd=None, timeout=120):
    r = subprocess.run(["hg", *args], cwd=cwd, env=HGENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"hg {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def nodes(repo):
    return hg("log", "-R", repo, "-T", "{node}\n").split()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The repository, appstackd serving hgweb.wsgi on 2 workers, and
    appstack-proxy in front. Yields (repo, direct URL, proxied URL)."""
    d = str(tmp_path_factory.mktemp("hg"))
    repo = os.path.join(d, "repo")
    hg("init", repo)
    # A few hundred commits at once (one new file each), then a binary.
    hg("debugbuilddag", "--new-file", f"+{COMMITS}", cwd=repo)
    hg("update", "-q", "tip", cwd=repo)
    with open(os.path.join(repo, "big.bin"), "wb") as f:
        f.write(os.urandom(BIG))
    hg("add", "-q", "big.bin", cwd=repo)
    hg("commit", "-q", "-m", "a binary", cwd=repo)
    with open(os.path.join(repo, ".hg", "hgrc"), "w") as f:
        f.write("[web]\nallow-push = *\npush_ssl = false\n")
    app = os.path.join(d, "app")
    os.mkdir(app)
    with open(HGWEB) as f:
        text = f.read()
    assert 'config = b"/path/to/repo/or/config"' in text
    with open(os.path.join(app, "hgweb.py"), "w") as f:
        f.write(text.replace("/path/to/repo/or/config", repo))
    sup_port, proxy_port = free_port(), free_port()
    cfg = write_config(d, f"""
        [app]
        module = hgweb:application
        chdir = {app}

        [supervisor]
        listen = 127.0.0.1:{sup_port}
        workers = 2
        timeout = 60
        control = {d}/control.sock

        [proxy]
        workers = 1
        listen = 127.0.0.1:{proxy_port}
        upstream = 127.0.0.1:{sup_port}
        client_max_body_size = 50m
        """)
    sup = Supervisor(cfg, sup_port, env=ENV)
    proxy = None
    try:
        sup.wait_ready(2, timeout=60)
        proxy = Proxy(cfg, proxy_port)
        yield repo, f"http://127.0.0.1:{sup_port}/", f"http://127.0.0.1:{proxy_port}/"
    finally:
        if proxy:
            proxy.stop()
        sup.stop()


def url_of(served, via):
    return served[1] if via == "direct" else served[2]


def cat(repo, name):
    r = subprocess.run(["hg", "cat", "-r", "tip", name], cwd=repo, env=HGENV, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return hashlib.sha256(r.stdout).hexdigest()


@pytest.mark.parametrize("via", ["direct", "proxy"])
def test_clone_pull_push(served, tmp_path, via):
    repo, url = served[0], url_of(served, via)
    dest = str(tmp_path / "clone")
    hg("clone", "-q", url, dest)
    assert nodes(dest) == nodes(repo)
    assert len(nodes(dest)) >= COMMITS + 1
    assert sha256(os.path.join(dest, "big.bin")) == sha256(os.path.join(repo, "big.bin"))
    assert len([n for n in os.listdir(dest) if n.startswith("nf")]) == COMMITS
    hg("verify", "-q", "-R", dest)
    # pull: a commit made on the server side arrives.
    hg("update", "-q", "tip", cwd=repo)     # on top of what the other test pushed
    marker = os.path.join(repo, f"pulled-{via}.txt")
    with open(marker, "w") as f:
        f.write(via)
    hg("commit", "-q", "-A", "-m", f"for pull {via}", marker, cwd=repo)
    hg("pull", "-q", "-u", url, cwd=dest)
    assert nodes(dest) == nodes(repo)
    with open(os.path.join(dest, f"pulled-{via}.txt")) as f:
        assert f.read() == via
    # push: a commit with a new binary goes the other way.
    blob = os.urandom(2 * 1024 * 1024)
    with open(os.path.join(dest, f"pushed-{via}.bin"), "wb") as f:
        f.write(blob)
    hg("commit", "-q", "-A", "-m", f"push {via}", cwd=dest)
    hg("push", "-q", url, cwd=dest)
    assert nodes(repo) == nodes(dest)
    assert cat(repo, f"pushed-{via}.bin") == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize("via", ["direct", "proxy"])
def test_stream_clone(served, tmp_path, via):
    repo, url = served[0], url_of(served, via)
    dest = str(tmp_path / "clone")
    out = hg("clone", "--stream", "-U", url, dest)
    assert "streaming all changes" in out, out
    assert nodes(dest) == nodes(repo)
    assert cat(dest, "big.bin") == sha256(os.path.join(repo, "big.bin"))
