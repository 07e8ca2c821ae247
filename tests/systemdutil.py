"""Helpers for the systemd tests: rendered unit files, a private journald."""
import os
import shutil
import signal
import socket
import subprocess
import time

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("appstack.socket", "appstack.service",
         "appstack-proxy.socket", "appstack-proxy.service",
         "appstack@.socket", "appstack@.service",
         "appstack-acme.service", "appstack-acme.timer")


def render_units(dest, bindir, sysconfdir):
    """Writes the units into DEST the way `make` substitutes them."""
    paths = []
    for name in UNITS:
        with open(os.path.join(SRCDIR, "units", name + ".in")) as f:
            text = f.read()
        text = text.replace("@bindir@", bindir).replace("@sysconfdir@", sysconfdir)
        path = os.path.join(dest, name)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths


def parse_unit(path):
    """{section: {key: [values]}} of a unit file (keys may repeat)."""
    sections, current = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value):
    """'45s', '1min', '10' -> seconds (the forms the units use)."""
    for suffix, factor in (("min", 60), ("ms", 0.001), ("s", 1), ("h", 3600)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


# ------------------------------------------------------------ private journald
#
# A real systemd-journald, run standalone in its own mount namespace: its
# sockets and its (volatile) journal files live in a test directory, bound
# over /run/systemd/journal and /run/log/journal. A program under test runs
# in another mount namespace with the same socket directory bound, and its
# stdout/stderr connected to journald's stream socket with JOURNAL_STREAM
# set, exactly as systemd does for a service.

JOURNALD = "/lib/systemd/systemd-journald"
JOURNALD_CONF = """\
[Journal]
Storage=volatile
RateLimitIntervalSec=0
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
ReadKMsg=no
Audit=no
"""


def journald_usable():
    return os.geteuid() == 0 and os.path.exists(JOURNALD) and shutil.which("unshare") \
        and shutil.which("journalctl")


class Journald:
    def __init__(self, directory):
        self.dir = directory
        self.sockets = os.path.join(directory, "journal-run")
        self.files = os.path.join(directory, "journal-log")
        os.makedirs(self.sockets)
        os.makedirs(self.files)
        conf = os.path.join(directory, "journald.conf")
        with open(conf, "w") as f:
            f.write(JOURNALD_CONF)
        script = (f"mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/journal && "
                  f"mount --bind {self.sockets} /run/systemd/journal && "
                  f"mount -t tmpfs tmpfs /run/log && mkdir -p /run/log/journal && "
                  f"mount --bind {self.files} /run/log/journal && "
                  f"mount --bind {conf} /etc/systemd/journald.conf && exec {JOURNALD}")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(os.path.join(self.sockets, "stdout")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("systemd-journald did not start")
            time.sleep(0.05)

    def command(self, ident, argv):
        """ARGV run with stdout/stderr on a journal stream named IDENT."""
        script = (f"mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/journal && "
                  f"mount --bind {self.sockets} /run/systemd/journal && exec \"$@\"")
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                "/usr/bin/python3", os.path.abspath(__file__), "--journal-stream", ident, "--", *argv]

    def entries(self, *matches):
        """Journal entries (dicts) matching FIELD=value MATCHES."""
        r = subprocess.run(["journalctl", "-D", self.files, "-o", "json", "--no-pager", *matches],
                           capture_output=True, text=True, timeout=30)
        import json
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def stop(self, signum=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self):
        os.kill(self.journald_pid(), signal.SIGSTOP)

    def resume(self):
        os.kill(self.journald_pid(), signal.SIGCONT)

    def journald_pid(self):
        # unshare execs sh, which execs journald: same pid.
        return self.proc.pid


def exec_with_journal_stream(ident, argv):
    """Connects stdout and stderr to journald's stream socket, the way
    systemd does for StandardOutput=journal, sets JOURNAL_STREAM, execs."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("/run/systemd/journal/stdout")
    s.shutdown(socket.SHUT_RD)
    # identifier, unit, priority, level prefix, forward to syslog/kmsg/console
    s.sendall(f"{ident}\n\n6\n1\n0\n0\n0\n".encode())
    st = os.fstat(s.fileno())
    os.dup2(s.fileno(), 1)
    os.dup2(s.fileno(), 2)
    s.close()
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    import sys
    if len(sys.argv) > 4 and sys.argv[1] == "--journal-stream" and sys.argv[3] == "--":
        exec_with_journal_stream(sys.argv[2], sys.argv[4:])
    sys.exit("usage: systemdutil.py --journal-stream IDENT -- COMMAND...")
