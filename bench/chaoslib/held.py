"""Listening sockets held across restarts, as systemd's .socket units hold
them, and programs started on them (bench/chaoslib/listenexec.py)."""
import os
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

from benchlib import procs  # noqa: E402

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "listenexec.py")
BACKLOG = 4096          # systemd's Backlog= default is SOMAXCONN


class HeldSocket:
    """A listening socket owned by the chaos script itself."""

    def __init__(self, spec, name):
        self.spec, self.name = spec, name
        if spec.startswith("unix:"):
            path = spec[5:]
            if os.path.exists(path):
                os.unlink(path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
        else:
            host, port = spec.rsplit(":", 1)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, int(port)))
        self.sock.listen(BACKLOG)

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


class HeldProc(procs.Proc):
    """A Proc started through the shim with SOCKETS as its LISTEN_FDS."""

    def __init__(self, name, argv, log_path, sockets, env=None, cwd=None, stop_signal=None):
        self.name, self.log_path = name, log_path
        self.stop_signal = stop_signal or procs.signal.SIGTERM
        self.argv = ["/usr/bin/python3", SHIM, *[f"{s.fileno()}:{s.name}" for s in sockets],
                     "--", *argv]
        self.t_start = time.monotonic()
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=cwd,
                start_new_session=True, pass_fds=[s.fileno() for s in sockets])
        self.pid = self.popen.pid
        procs._started.append(self)
