"""Privilege: the control socket refuses a real unprivileged user even when
the file mode would let it in (SO_PEERCRED), appstackd's workers run as
user=/group= while the master stays root, and appstack-proxy drops to its
[proxy] user/group once it holds its sockets. Needs root."""
import grp
import os
import socket
import stat
import subprocess

import pytest

from conftest import APPS, free_port, prog, wait_for, write_config
from hostileutil import ids_of, unprivileged_user
from proxyutil import Proxy, Upstream, get as proxy_get, ok, proxy_config
from supervisorutil import ENV, get, supervisor  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")

USER, UID, GID = unprivileged_user()
GROUP = grp.getgrgid(GID).gr_name


def dropping_config(tmpdir, port, app_dir=APPS, module="sup_app:application", workers=2):
    """An appstackd config whose workers run as the unprivileged user."""
    return write_config(tmpdir, f"""
        [app]
        module = {module}
        chdir = {app_dir}

        [supervisor]
        listen = 127.0.0.1:{port}
        workers = {workers}
        timeout = 5
        graceful_timeout = 5
        control = {tmpdir}/run/control.sock
        user = {USER}
        group = {GROUP}
        """)


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].split()
    return None


def as_nobody(*argv, timeout=30):
    """Runs ARGV as the unprivileged user, with no supplementary groups."""
    return subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--", *argv],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def open_up(path):
    """Lets anyone reach PATH through the file system: only SO_PEERCRED is
    left to keep strangers out."""
    while path not in ("/", "/tmp"):
        mode = os.stat(path).st_mode
        os.chmod(path, stat.S_IMODE(mode) | 0o755 if stat.S_ISDIR(mode) else 0o666)
        path = os.path.dirname(path)


@pytest.fixture
def sup(supervisor, tmpdir_short, port):
    s = supervisor(workers=2)
    ctl = os.path.join(tmpdir_short, "run", "control.sock")
    wait_for(lambda: os.path.exists(ctl), what="the control socket")
    open_up(ctl)
    s.ctl = ctl
    return s


def test_control_socket_refuses_another_uid(sup):
    pids = sup.ready_pids()
    for command in (["status"], ["reload"], ["scale", "5"], ["stop"]):
        r = as_nobody(prog("supctl"), "-s", sup.ctl, *command)
        assert r.returncode != 0, (command, r.stdout, r.stderr)
        assert "permission denied" in (r.stdout + r.stderr).lower(), (command, r.stdout, r.stderr)
    assert sup.proc.poll() is None, "a stranger stopped appstackd"
    assert sup.ready_pids() == pids, "a stranger changed the workers"
    assert get(sup.port)[0] == 200
    assert sup.supctl("status").returncode == 0     # root still may
    # The file mode let the stranger connect: the refusal is SO_PEERCRED's.
    assert f"refused uid {UID}" in sup.log_text(), sup.log_text()[-1000:]


def test_control_socket_raw_bytes_from_another_uid(sup):
    """Whatever a stranger writes, appstackd only hangs up on it."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n"
            "s.connect(sys.argv[1]); s.settimeout(5)\n"
            "try:\n s.sendall(b'stop\\n'*100); print(repr(s.recv(4096)))\n"
            "except OSError as e: print('error', e)\n")
    pids = sup.ready_pids()
    r = as_nobody("/usr/bin/python3", "-c", code, sup.ctl)
    assert r.returncode == 0, r.stderr
    # connect() itself succeeded (the mode lets anyone in): appstackd hung up.
    assert "Errno 13" not in r.stdout, r.stdout
    assert sup.proc.poll() is None and sup.ready_pids() == pids
    assert get(sup.port)[0] == 200


def test_workers_drop_to_user_and_group(supervisor, tmpdir_short, port):
    os.chmod(tmpdir_short, 0o755)
    s = supervisor(config=dropping_config(tmpdir_short, port), workers=2)
    master_uid, _ = ids_of(s.proc.pid)
    assert master_uid == (0, 0, 0, 0), "the master must keep root to manage sockets and respawn"
    for pid in s.ready_pids():
        uid, gid = ids_of(pid)
        assert uid == (UID,) * 4, f"worker {pid} uids {uid}"
        assert gid == (GID,) * 4, f"worker {pid} gids {gid}"
        groups = status_field(pid, "Groups") or []
        assert "0" not in groups, f"worker {pid} kept root's groups {groups}"
        assert int(status_field(pid, "CapEff")[0], 16) == 0
        assert int(status_field(pid, "CapPrm")[0], 16) == 0
    status, body = get(port)
    assert status == 200
    # Respawned workers drop too.
    victim = s.ready_pids()[0]
    os.kill(victim, 9)
    wait_for(lambda: victim not in s.ready_pids() and len(s.ready_pids()) == 2, timeout=20,
             what="a replacement worker")
    for pid in s.ready_pids():
        assert ids_of(pid)[0] == (UID,) * 4


def privileged_free_port():
    for p in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def test_proxy_drops_after_binding(tmpdir_short):
    os.chmod(tmpdir_short, 0o755)
    secret = os.path.join(tmpdir_short, "root-only")
    os.makedirs(secret)
    with open(os.path.join(secret, "key.txt"), "w") as f:
        f.write("ROOT-ONLY")
    os.chmod(os.path.join(secret, "key.txt"), 0o600)
    public = os.path.join(tmpdir_short, "public")
    os.makedirs(public)
    with open(os.path.join(public, "hello.txt"), "w") as f:
        f.write("public")
    os.chmod(public, 0o755)
    os.chmod(os.path.join(public, "hello.txt"), 0o644)
    up = Upstream(lambda req: ok(b"from-upstream"))
    port = privileged_free_port()
    locations = (f"[location /secret/]\nalias = {secret}/\n\n[location /public/]\nalias = {public}/\n")
    conf = proxy_config(tmpdir_short, port, [up.addr], locations=locations,
                        extra=f"user = {USER}\ngroup = {GROUP}")
    p = Proxy(conf, port)
    try:
        # The socket accepts from listen() on; the drop follows right after.
        wait_for(lambda: ids_of(p.proc.pid) == ((UID,) * 4, (GID,) * 4), timeout=10,
                 what="the proxy to drop to the unprivileged user")
        assert "0" not in (status_field(p.proc.pid, "Groups") or [])
        assert int(status_field(p.proc.pid, "CapEff")[0], 16) == 0
        assert proxy_get(port, "/public/hello.txt").body == b"public"
        assert proxy_get(port, "/anything").body == b"from-upstream"
        r = proxy_get(port, "/secret/key.txt")
        assert r.status in (403, 404) and b"ROOT-ONLY" not in r.body
    finally:
        p.stop()
        up.close()


def test_proxy_without_user_keeps_running_as_started(tmpdir_short):
    """No user/group: nothing is changed (the unit's User= decides)."""
    up = Upstream(lambda req: ok(b"x"))
    port = free_port()
    p = Proxy(proxy_config(tmpdir_short, port, [up.addr]), port)
    try:
        assert ids_of(p.proc.pid)[0] == (os.getuid(),) * 4
    finally:
        p.stop()
        up.close()


def test_worker_cannot_read_root_only_files(supervisor, tmpdir_short, port):
    """Dropping is real: the app, as the worker's user, gets EACCES on a
    root-only file."""
    os.chmod(tmpdir_short, 0o755)
    app_dir = os.path.join(tmpdir_short, "app")
    os.makedirs(app_dir)
    os.chmod(app_dir, 0o755)
    secret = os.path.join(tmpdir_short, "root-only.txt")
    with open(secret, "w") as f:
        f.write("ROOT-ONLY")
    os.chmod(secret, 0o600)
    with open(os.path.join(app_dir, "peek.py"), "w") as f:
        f.write("def application(environ, start_response):\n"
                "    try:\n"
                f"        body = open({secret!r}, 'rb').read()\n"
                "    except PermissionError:\n"
                "        body = b'EACCES'\n"
                "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
                "    return [body]\n")
    os.chmod(os.path.join(app_dir, "peek.py"), 0o644)
    s = supervisor(config=dropping_config(tmpdir_short, port, app_dir, "peek:application", workers=1), workers=1)
    assert get(port) == (200, "EACCES")
    assert s.proc.poll() is None
