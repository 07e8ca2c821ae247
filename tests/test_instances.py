"""Several apps on one host: appstackd -a NAME reads /etc/appstack/NAME.ini
and puts its sockets in /run/appstack/NAME/, supctl -a NAME picks one,
supctl status --all shows them all, and reloading or killing one never
touches another; one proxy with a [site] per app in front of them.

The real /etc/appstack and /run/appstack are used, in a private mount
namespace (an overlay over /etc, a tmpfs on /run) so that the host's are
left alone; /proc/PID/root reaches its sockets from outside."""
import http.client
import json
import os
import signal
import socket
import subprocess
import textwrap
import time

import pytest

from conftest import free_port, prog, wait_for
from supervisorutil import ENV

APP = """\
import os


def application(environ, start_response):
    body = ("%s %d" % (os.environ["SITE"], os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


class Host:
    """A mount namespace with its own /etc/appstack and /run, held by a
    sleeping process; commands enter it with nsenter."""

    def __init__(self, tmp):
        os.makedirs(f"{tmp}/ovl")
        script = (f"mount -t tmpfs tmpfs {tmp}/ovl && mkdir {tmp}/ovl/up {tmp}/ovl/work && "
                  f"mount -t overlay overlay -o lowerdir=/etc,upperdir={tmp}/ovl/up,workdir={tmp}/ovl/work /etc && "
                  "mkdir -p /etc/appstack && mount -t tmpfs tmpfs /run && echo ready && exec sleep 600")
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            pytest.skip(f"no private mount namespace here: {self.holder.stderr.read()}")
        self.root = f"/proc/{self.holder.pid}/root"
        self.procs = []

    def argv(self, *args):
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *args]

    def run(self, *args, timeout=60):
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=ENV)

    def start(self, log, *args):
        f = open(log, "wb")
        p = subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             env=ENV)
        self.procs.append(p)
        return p

    def write(self, path, text):
        with open(self.root + path, "w") as f:
            f.write(textwrap.dedent(text))

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def host(tmpdir_short):
    h = Host(tmpdir_short)
    yield h
    h.close()


def unix_get(path, target="/"):
    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(10)
            self.sock.connect(path)
    c = Conn("localhost")
    c.request("GET", target)
    r = c.getresponse()
    return r.status, r.read().decode()


def tcp_get(port, host_header, target="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", target, headers={"Host": host_header})
    r = c.getresponse()
    return r.status, r.read().decode()


def add_app(host, tmp, name):
    d = os.path.join(tmp, "apps")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "siteapp.py"), "w") as f:
        f.write(APP)
    # No listen, no control: the instance's defaults.
    host.write(f"/etc/appstack/{name}.ini", f"""\
        [app]
        module = siteapp:application
        chdir = {d}
        env = SITE={name}

        [supervisor]
        workers = 2
        graceful_timeout = 5
        """)


def status(host, name):
    r = host.run(prog("supctl"), "-a", name, "status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def start_instance(host, tmp, name):
    p = host.start(os.path.join(tmp, f"{name}.log"), prog("appstackd"), "-a", name)
    sock = f"{host.root}/run/appstack/{name}/app.sock"

    def up():
        if p.poll() is not None:
            raise AssertionError(open(os.path.join(tmp, f"{name}.log")).read())
        return host.run(prog("supctl"), "-a", name, "status").returncode == 0 and \
            status(host, name)["workers_ready"] >= 2
    wait_for(up, timeout=30, what=f"instance {name}")
    return p, sock


def test_instances_are_separate_and_listed(host, tmpdir_short):
    for name in ("blog", "shop"):
        add_app(host, tmpdir_short, name)
    # The proxy's file configures no app: not an instance.
    host.write("/etc/appstack/appstack.ini", "[proxy]\nlisten = 127.0.0.1:1\nupstream = unix:/x.sock\n")
    assert host.run(prog("appstackd"), "-a", "blog", "--check").returncode == 0
    blog, blog_sock = start_instance(host, tmpdir_short, "blog")
    shop, shop_sock = start_instance(host, tmpdir_short, "shop")
    assert os.path.exists(f"{host.root}/run/appstack/blog/control.sock")
    assert unix_get(blog_sock)[1].startswith("blog ")
    assert unix_get(shop_sock)[1].startswith("shop ")

    r = host.run(prog("supctl"), "status", "--all")
    assert r.returncode == 0, r.stderr
    assert "appstack@blog (/etc/appstack/blog.ini)" in r.stdout
    assert "appstack@shop (/etc/appstack/shop.ini)" in r.stdout
    assert r.stdout.index("appstack@blog") < r.stdout.index("appstack@shop")
    assert "appstack (" not in r.stdout

    # Reloading one: a new generation there, nothing changes in the other.
    blog_before = status(host, "blog")
    shop_before = status(host, "shop")
    r = host.run(prog("supctl"), "-a", "shop", "reload")
    assert r.returncode == 0, r.stderr
    assert status(host, "shop")["generation"] == shop_before["generation"] + 1
    blog_after = status(host, "blog")
    assert blog_after["generation"] == blog_before["generation"]
    assert {w["pid"] for w in blog_after["workers"]} == {w["pid"] for w in blog_before["workers"]}

    # A crashed instance: the other serves on, --all says which is down.
    os.kill(blog.pid, signal.SIGKILL)
    blog.wait()
    assert unix_get(shop_sock)[1].startswith("shop ")
    r = host.run(prog("supctl"), "status", "--all", "--json")
    assert r.returncode == 1
    inst = {i["name"]: i for i in json.loads(r.stdout)["instances"]}
    assert set(inst) == {"blog", "shop"}
    assert inst["blog"]["running"] is False and "not running" in inst["blog"]["error"]
    assert inst["blog"]["control"] == "/run/appstack/blog/control.sock"
    assert inst["shop"]["running"] is True and inst["shop"]["unit"] == "appstack@shop.service"
    assert inst["shop"]["status"]["generation"] == shop_before["generation"] + 1
    r = host.run(prog("supctl"), "-a", "blog", "status")
    assert r.returncode == 1 and "/run/appstack/blog/control.sock" in r.stderr


def test_bad_instance_names_and_options(host):
    for args in (["-a", "appstack", "status"], ["-a", "../etc", "status"], ["-a", ".x", "status"],
                 ["-a", "blog", "status", "--all"], ["-c", "/x.ini", "status", "--all"]):
        r = host.run(prog("supctl"), *args)
        assert r.returncode == 2, (args, r)
    r = host.run(prog("appstackd"), "-a", "a/b", "--check")
    assert r.returncode == 2 and "not an instance name" in r.stderr
    r = host.run(prog("supctl"), "status", "--all")
    assert r.returncode == 1 and "no app configured in /etc/appstack" in r.stderr
    # An instance whose file is missing: the same error as -c with that file.
    r = host.run(prog("appstackd"), "-a", "nothere", "--check")
    assert r.returncode == 1 and "/etc/appstack/nothere.ini:0: cannot open" in r.stderr


def test_one_proxy_in_front_of_three_instances(host, tmpdir_short):
    names = ("blog", "shop", "wiki")
    for name in names:
        add_app(host, tmpdir_short, name)
    port = free_port()
    sites = "".join(f"\n[site {n}]\nserver_name = {n}.example\nupstream = unix:/run/appstack/{n}/app.sock\n"
                    for n in names)
    host.write("/etc/appstack/appstack.ini", f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:{port}\n{sites}")
    procs = {n: start_instance(host, tmpdir_short, n)[0] for n in names}
    proxy = host.start(os.path.join(tmpdir_short, "proxy.log"), prog("appstack-proxy"))
    def answers():
        if proxy.poll() is not None:
            pytest.fail(open(os.path.join(tmpdir_short, "proxy.log")).read())
        try:
            return tcp_get(port, "blog.example")[0] == 200
        except OSError:
            return False
    wait_for(answers, timeout=10, what="proxy")
    for n in names:
        assert tcp_get(port, f"{n}.example")[1].startswith(n + " ")
    assert tcp_get(port, "other.example")[0] == 421
    # Stopping one instance: its site fails (502), the others do not notice.
    r = host.run(prog("supctl"), "-a", "shop", "stop")
    assert r.returncode == 0, r.stderr
    procs["shop"].wait(timeout=10)
    assert tcp_get(port, "shop.example")[0] == 502
    for n in ("blog", "wiki"):
        for _ in range(5):
            assert tcp_get(port, f"{n}.example")[1].startswith(n + " ")
