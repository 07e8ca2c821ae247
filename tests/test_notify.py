"""sd_notify with a real datagram socket as NOTIFY_SOCKET: READY=1 once the
app has loaded, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a
reload, STOPPING=1, STATUS= lines, WATCHDOG=1 when WATCHDOG_USEC is set."""
import os
import socket
import threading
import time

from supervisorutil import ENV, supervisor, wait_for  # noqa: F401


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def states(self):
        """Every VAR=value sent, in order (a datagram may carry several)."""
        return [line for m in list(self.messages) for line in m.splitlines()]

    def close(self):
        self.done.set()
        self.thread.join()
        self.sock.close()


def test_notify_sequence(supervisor, tmpdir_short):
    ns = NotifySocket(os.path.join(tmpdir_short, "notify.sock"))
    try:
        env = dict(ENV, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="400000")
        s = supervisor(workers=2, env=env, wait=False)
        wait_for(lambda: "READY=1" in ns.states(), timeout=20, what="READY=1")
        # READY=1 only once every worker of the first generation is ready.
        assert len(s.ready_pids()) == 2
        r = s.supctl("reload")
        assert r.returncode == 0, r
        wait_for(lambda: ns.states().count("READY=1") == 2, timeout=20, what="the second READY=1")
        wait_for(lambda: ns.states().count("WATCHDOG=1") >= 3, timeout=20, what="WATCHDOG=1")
        assert s.supctl("stop").returncode == 0
        assert s.proc.wait(timeout=15) == 0
        time.sleep(0.3)
    finally:
        ns.close()
    states = ns.states()
    seq = [x for x in states if x in ("READY=1", "RELOADING=1", "STOPPING=1")]
    assert seq == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], states
    i = states.index("RELOADING=1")
    assert states[i + 1].startswith("MONOTONIC_USEC=")
    usec = int(states[i + 1].split("=")[1])
    assert abs(usec - time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6) < 60e6
    status = [x for x in states if x.startswith("STATUS=")]
    assert any("2 workers, generation 1" in x for x in status), status
    assert any("generation 2" in x for x in status), status
    # Workers must not talk to systemd in the master's name.
    assert not any(x.startswith("MAINPID=") for x in states)


def test_no_watchdog_without_watchdog_usec(supervisor, tmpdir_short):
    ns = NotifySocket(os.path.join(tmpdir_short, "notify.sock"))
    try:
        s = supervisor(workers=1, env=dict(ENV, NOTIFY_SOCKET=ns.path))
        wait_for(lambda: "READY=1" in ns.states(), timeout=30, what="READY=1")
        time.sleep(0.6)
        s.stop()
    finally:
        ns.close()
    assert "WATCHDOG=1" not in ns.states()
    assert ns.states().count("READY=1") == 1      # the worker sent none of its own


def test_status_shows_start_failure(supervisor, tmpdir_short):
    ns = NotifySocket(os.path.join(tmpdir_short, "notify.sock"))
    try:
        supervisor(module="no_such_module_here:application", workers=1, wait=False,
                   env=dict(ENV, NOTIFY_SOCKET=ns.path))
        wait_for(lambda: any("no_such_module_here" in x for x in ns.states() if x.startswith("STATUS=")),
                 timeout=30, what="the failure in STATUS=")
    finally:
        ns.close()
    assert "READY=1" not in ns.states()
