"""TERM is a graceful stop also for connections nobody has accepted yet:
when appstackd or appstack-proxy bound the socket itself (a container, no
systemd), the connections waiting in its listen queue at TERM are served,
never reset, and later ones are refused (a balancer can retry elsewhere)."""
import os
import platform
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, prog, wait_for
from proxyutil import Proxy, Upstream, ok, proxy_config, read_response
from supervisorutil import ENV, Supervisor, sup_config
from workerutil import Conn, Worker, wait_exit, worker_config

QUEUED = 12


def send_requests(connect, n, path):
    """N connections, each with its request sent; returns them with their
    sockets connected (the server may not have accepted any yet)."""
    socks = []
    for _ in range(n):
        s = connect()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        socks.append(s)
    return socks


def answers(socks):
    """The status of each connection's response, or the error instead."""
    out = []
    for s in socks:
        try:
            with s.makefile("rb") as f:
                r = read_response(f)
            out.append(r.status if r else "closed without an answer")
        except OSError as e:
            out.append(type(e).__name__)
        finally:
            s.close()
    return out


def term_pending(pid):
    """SIGTERM waits for the process (it is stopped)."""
    with open(f"/proc/{pid}/status") as f:
        masks = [int(l.split()[1], 16) for l in f if l.startswith(("SigPnd:", "ShdPnd:"))]
    return any(m & (1 << (signal.SIGTERM - 1)) for m in masks)


def in_epoll_wait(pid):
    """The process sleeps in epoll_wait (x86-64: 232) or epoll_pwait (281)
    and has nothing else to do."""
    if platform.machine() != "x86_64":
        time.sleep(0.5)         # no syscall numbers for it here: let it settle
        return True
    with open(f"/proc/{pid}/syscall") as f:
        nr = f.read().split()[0]
    return nr in ("232", "281", "441")


def connect_after(connect):
    """What a client that comes after TERM meets."""
    try:
        s = connect()
    except (ConnectionRefusedError, socket.timeout, TimeoutError):
        return "refused"
    try:
        s.sendall(b"GET /sleep?0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with s.makefile("rb") as f:
            r = read_response(f)
        return r.status if r else "closed"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_appstackd_serves_its_listen_queue_at_term(tmpdir_short, kind):
    port = free_port()
    cfg = sup_config(tmpdir_short, port, workers=1, graceful_timeout=20)
    if kind == "unix":
        path = os.path.join(tmpdir_short, "app.sock")
        with open(cfg) as f:
            text = f.read().replace(f"listen = 127.0.0.1:{port}", f"listen = unix:{path}")
        with open(cfg, "w") as f:
            f.write(text)

        def connect():
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(20)
            s.connect(path)
            return s
    else:
        def connect():
            return socket.create_connection(("127.0.0.1", port), timeout=20)
    sup = Supervisor(cfg, port)
    sup.wait_control()
    wait_for(lambda: sup.status()["workers_ready"] == 1, timeout=30, what="the worker")
    # One worker, 0.3 s a request: most of these wait in the queue.
    socks = send_requests(connect, QUEUED, "/sleep?0.3")
    time.sleep(0.2)
    sup.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    late = connect_after(connect)
    got = answers(socks)
    assert sup.proc.wait(timeout=30) == 0
    assert got == [200] * QUEUED, got
    assert late in ("refused", 200), late


@pytest.mark.parametrize("whole", [True, False], ids=["server-stops", "worker-stops-alone"])
def test_worker_takes_the_queue_only_when_the_server_stops(tmpdir_short, whole):
    """The scoreboard's take_queued (common/scoreboard.h), played by the
    test: a worker that gets SIGTERM while the master stops the whole server
    serves what waits in the listen queue; one that stops alone (reload,
    scale-down) leaves it to the workers that stay, here the test."""
    port = free_port()
    w = Worker(tmpdir_short, port, worker_config(tmpdir_short, port), master=True)
    w.start()
    try:
        assert w.read_channel() == "READY"
        busy = Conn(w.port)
        busy.send(b"GET /sleep?1 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: w.slot()["path"] == "/sleep", timeout=5, what="busy")
        # Inside the app, the worker accepts nothing: these wait in the queue.
        socks = send_requests(lambda: socket.create_connection(("127.0.0.1", port), timeout=20), 6, "/pid")
        if whole:
            w.sb[0:8] = (1).to_bytes(8, "little")
        w.proc.send_signal(signal.SIGTERM)
        assert busy.response()[0] == 200
        assert wait_exit(w.proc) == 0
        if whole:
            assert answers(socks) == [200] * 6
        else:
            w.lsock.settimeout(1)
            left = [w.lsock.accept()[0] for _ in socks]
            for s in left + socks:
                s.close()
    finally:
        w.stop()


def test_appstackd_leaves_the_queue_of_a_systemd_socket(tmpdir_short):
    """A socket from systemd keeps its queue for the next start: at TERM
    the workers do not take it. The test plays systemd: it holds the
    socket, hands it over as LISTEN_FDS and accepts what is left after."""
    port = free_port()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", port))
    lsock.listen(128)
    fd = lsock.fileno()
    wrap = ("bash", "-c", f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=app exec "$@"', "bash")
    sup = Supervisor(sup_config(tmpdir_short, port, workers=1, graceful_timeout=20), port, argv_prefix=wrap,
                     pass_fds=(fd,))
    try:
        sup.wait_control()
        wait_for(lambda: sup.status()["workers_ready"] == 1, timeout=30, what="the worker")
        assert [x["inherited"] for x in sup.status()["listen"]] == [True]
        busy = send_requests(lambda: socket.create_connection(("127.0.0.1", port), timeout=20), 1, "/sleep?1")
        time.sleep(0.3)
        socks = send_requests(lambda: socket.create_connection(("127.0.0.1", port), timeout=20), 4, "/pid")
        sup.proc.send_signal(signal.SIGTERM)
        assert answers(busy) == [200]
        assert sup.proc.wait(timeout=30) == 0
        lsock.settimeout(1)
        left = [lsock.accept()[0] for _ in socks]
        for s in left + socks:
            s.close()
    finally:
        sup.stop()
        lsock.close()


def test_proxy_serves_its_listen_queue_at_term(tmpdir_short):
    up = Upstream(lambda req: ok(b"fine"))
    port = free_port()
    proxy = Proxy(proxy_config(tmpdir_short, port, [up.addr]), port)
    wait_for(lambda: len(proxy.serving()) == 1, timeout=5, what="the serving process")
    serving = proxy.serving()[0]
    try:
        # Stopped, the serving process accepts nothing: the connections
        # queue up. It is stopped while it waits for events, so it has not
        # seen them. The master passes TERM on; it waits until SIGCONT.
        wait_for(lambda: in_epoll_wait(serving), timeout=5, what="the proxy waiting in epoll_wait")
        os.kill(serving, signal.SIGSTOP)
        wait_for(lambda: open(f"/proc/{serving}/stat").read().split(")")[1].split()[0] == "T",
                 timeout=5, what="the proxy stopped")
        socks = send_requests(lambda: socket.create_connection(("127.0.0.1", port), timeout=20), QUEUED, "/q")
        proxy.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: term_pending(serving), timeout=5, what="TERM passed on by the master")
        os.kill(serving, signal.SIGCONT)
        got = answers(socks)
        assert proxy.proc.wait(timeout=30) == 0
        assert got == [200] * QUEUED, got
        assert connect_after(lambda: socket.create_connection(("127.0.0.1", port), timeout=3)) == "refused"
        assert "connections taken from the listen queues" in proxy.log_text(), proxy.log_text()
    finally:
        try:
            os.kill(serving, signal.SIGCONT)
        except ProcessLookupError:
            pass
        proxy.stop()
        up.close()


UNPRIVILEGED = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def churn_until_stopped(port, proc):
    """Clients that open a connection per request, in 8 threads, while
    PROC gets TERM; returns the failures (answers other than 200, errors
    after connecting: a reset). A refused connect is what a stopped server
    should give, and the test waits for one after the stop."""
    res = {"ok": 0, "refused": 0, "failed": []}
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
            except ConnectionRefusedError:
                with lock:
                    res["refused"] += 1
                time.sleep(0.02)
                continue
            try:
                s.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                with s.makefile("rb") as f:
                    r = read_response(f)
                with lock:
                    if r and r.status == 200:
                        res["ok"] += 1
                    else:
                        res["failed"].append(repr(r))
            except OSError as e:
                with lock:
                    res["failed"].append(repr(e))
            finally:
                s.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: res["ok"] > 300, timeout=20, what="load")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_for(lambda: res["refused"] > 0, timeout=10, what="a refused connection after the stop")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    return res["failed"]


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_proxy_term_during_connection_churn_resets_nothing(tmpdir_short, user):
    """Clients that open a connection per request while TERM arrives: each
    one is answered or refused, none reset. A handshake under way at TERM
    completes into the queue (the socket filter drops only new SYNs), and
    the queue is taken until it stays empty. Unprivileged (a container's
    user), a kernel may refuse the filter: new connections are then served
    until none comes, and the master's copy of the socket must not keep it
    open after the serving processes have closed theirs."""
    up = Upstream(lambda req: ok(b"fine"))
    port = free_port()
    os.chmod(tmpdir_short, 0o755)
    wrap = () if user == "root" else UNPRIVILEGED
    proxy = Proxy(proxy_config(tmpdir_short, port, [up.addr], workers=2), port, wrap=wrap)
    try:
        failed = churn_until_stopped(port, proxy.proc)
    finally:
        proxy.stop()
        up.close()
    assert not failed, (len(failed), failed[:3])


@pytest.mark.parametrize("user,threads,preload", [("root", 1, "off"), ("nobody", 1, "off"), ("nobody", 4, "off"),
                                                  ("nobody", 1, "on")])
def test_appstackd_term_during_connection_churn_resets_nothing(tmpdir_short, user, threads, preload):
    """The same for appstackd and its workers on a socket it bound: the
    workers learn that the whole server stops from the scoreboard, not from
    the socket filter a kernel may refuse an unprivileged appstackd, take
    the queue until it stays empty, and the master's copy of the socket
    (and the preload template's) does not outlive theirs."""
    port = free_port()
    os.chmod(tmpdir_short, 0o755)
    run = os.path.join(tmpdir_short, "run")
    os.mkdir(run)
    wrap = ()
    if user == "nobody":
        os.chown(run, 65534, 65534)
        wrap = UNPRIVILEGED
    cfg = sup_config(tmpdir_short, port, workers=2, extra=f"threads = {threads}", app_extra=f"preload = {preload}")
    sup = Supervisor(cfg, port, argv_prefix=wrap)
    try:
        sup.wait_control()
        wait_for(lambda: sup.status()["workers_ready"] == 2, timeout=30, what="the workers")
        failed = churn_until_stopped(port, sup.proc)
        log = sup.log_text()
    finally:
        sup.stop()
    assert not failed, (len(failed), failed[:3], log[-2000:])
