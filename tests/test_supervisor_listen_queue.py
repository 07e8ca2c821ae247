"""The app socket's listen queue (connections no worker has accepted yet)
in `supctl status`, its JSON and systemd's STATUS=, for TCP and unix
sockets: the only worker is stopped, the test opens connections, and the
counts must be exactly those."""
import os
import signal
import socket

from conftest import wait_for
from supervisorutil import ENV, get, sup_config, supervisor  # noqa: F401
from test_notify import NotifySocket


def stopped_worker(s):
    pid = s.ready_pids()[0]
    os.kill(pid, signal.SIGSTOP)
    return pid


def queued(s, n):
    st = s.status()
    return st["listen_queue"] == n and [x["queue"] for x in st["listen"]] == [n] and st


def test_tcp_listen_queue(supervisor, tmpdir_short):
    ns = NotifySocket(os.path.join(tmpdir_short, "notify.sock"))
    conns = []
    try:
        s = supervisor(workers=1, timeout=60, env=dict(ENV, NOTIFY_SOCKET=ns.path))
        assert queued(s, 0)
        pid = stopped_worker(s)
        try:
            conns = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(5)]
            wait_for(lambda: queued(s, 5), timeout=5, what="5 queued connections")
            r = s.supctl("status")
            assert f"listen 127.0.0.1:{s.port} (bound), queue 5" in r.stdout, r.stdout
            wait_for(lambda: any("listen queue 5" in x for x in ns.states() if x.startswith("STATUS=")),
                     timeout=5, what="STATUS= with the queue")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: queued(s, 0), timeout=10, what="the queue to drain")
        wait_for(lambda: any("listen queue 0" in x for x in ns.states()[-3:]), timeout=5,
                 what="STATUS= with an empty queue")
    finally:
        for c in conns:
            c.close()
        ns.close()


def test_unix_listen_queue(supervisor, tmpdir_short, port):
    path = os.path.join(tmpdir_short, "app.sock")
    config = sup_config(tmpdir_short, port, workers=1, timeout=60)
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace(f"listen = 127.0.0.1:{port}", f"listen = unix:{path}"))
    s = supervisor(config=config, workers=1)
    conns = []
    pid = stopped_worker(s)
    try:
        for _ in range(3):
            c = socket.socket(socket.AF_UNIX)
            c.connect(path)
            conns.append(c)
        wait_for(lambda: queued(s, 3), timeout=5, what="3 queued connections")
        assert f"listen unix:{path} (bound), queue 3" in s.supctl("status").stdout
    finally:
        os.kill(pid, signal.SIGCONT)
        for c in conns:
            c.close()
    wait_for(lambda: queued(s, 0), timeout=10, what="the queue to drain")
