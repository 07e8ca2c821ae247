"""Starting, watching and stopping the processes a benchmark runs.

Every process is started in its own session so that it and everything it
forks can be stopped by its own id, and is remembered so that an interrupted
run still stops all of them (atexit + SIGINT/SIGTERM)."""
import atexit
import os
import resource
import signal
import subprocess
import time

_started = []           # Proc objects still running
_reaper = None

# The reaper outlives a benchmark killed with SIGKILL (or by a tool's
# timeout): it learns each server's session id through a pipe, and when the
# pipe closes without the server having been stopped, it kills that session.
_REAPER = r"""
import os, signal, sys
live = set()
for line in sys.stdin:
    pid = int(line)
    if pid > 0:
        live.add(pid)
    else:
        live.discard(-pid)
for pid in live:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
"""


def _tell_reaper(pid):
    global _reaper
    if _reaper is None and pid < 0:
        return
    if _reaper is None:
        _reaper = subprocess.Popen(["/usr/bin/python3", "-c", _REAPER], stdin=subprocess.PIPE,
                                   start_new_session=True, text=True)
    try:
        _reaper.stdin.write(f"{pid}\n")
        _reaper.stdin.flush()
    except OSError:
        pass    # no reaper: the in-process cleanup still runs


class Proc:
    """One started program (and, through its session, its children)."""

    def __init__(self, name, argv, log_path, cpus=None, env=None, cwd=None,
                 stop_signal=signal.SIGTERM, pass_fds=()):
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        if cpus:
            # taskset execs the program, so the pid we get is the program's.
            argv = ["taskset", "-c", cpus] + list(argv)
        self.argv = argv
        self.t_start = time.monotonic()
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=env, cwd=cwd, start_new_session=True, pass_fds=pass_fds)
        self.pid = self.popen.pid
        _started.append(self)
        _tell_reaper(self.pid)

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-8192:].decode("utf-8", "replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(data.splitlines()[-lines:])

    def stop(self, timeout=2.0):
        """Asks the program to stop, then kills whatever of its tree is left.
        Nothing is in flight when a stack is stopped, so the grace is short."""
        tree = descendants(self.pid)
        if self.alive():
            _signal(self.pid, self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Its session: children that stayed in it, plus any that left it.
        if self.alive():
            _killpg(self.pid)
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            _signal(self.pid, signal.SIGKILL)
            self.popen.wait()
        if self in _started:
            _started.remove(self)
        _tell_reaper(-self.pid)


_short_lived = set()    # pids of run_capture children under way


def run_capture(argv, timeout, env=None):
    """Runs a short-lived program (wrk) like subprocess.run, but in its own
    session known to the reaper, so it cannot outlive the benchmark either.
    Returns (exit status, stdout+stderr text)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    _short_lived.add(p.pid)
    _tell_reaper(p.pid)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _killpg(p.pid)
        out, _ = p.communicate()
    finally:
        _short_lived.discard(p.pid)
        _tell_reaper(-p.pid)
    return p.returncode, out


def build_c(workdir, name, src, libs):
    """bench/SRC built with cc -O2 into WORKDIR/NAME once per run; its path."""
    out = os.path.join(workdir, name)
    if not os.path.exists(out):
        r = subprocess.run(["cc", "-O2", "-pthread", "-o", out, src, *libs], capture_output=True, text=True,
                           timeout=120)
        if r.returncode:
            raise RuntimeError(f"cannot build {name}: {r.stderr[-1500:]}")
    return out


def run_client(argv, duration, cpus=None):
    """A load client (pinned to CPUS) that runs for about DURATION seconds:
    (its output, the CPUs' worth of time it used); ValueError when it fails."""
    name = os.path.basename(argv[0])
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    status, out = run_capture(argv, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if status != 0:
        raise ValueError(f"{name} exited {status}:\n{out[-2000:]}")
    return out, cpu / max(1.0, duration)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all():
    global _reaper
    for pid in list(_short_lived):
        _killpg(pid)
    for p in list(reversed(_started)):
        try:
            p.stop(timeout=3)
        except Exception as e:  # cleanup must go on for the others
            print(f"bench: stopping {p.name}: {e}")
    if _reaper is not None:
        _reaper.stdin.close()
        _reaper.wait()
        _reaper = None


def _on_signal(signum, frame):
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup():
    atexit.register(stop_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


# ---- /proc readers -------------------------------------------------------

def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def ppid_map():
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            out[int(entry)] = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue    # exited while we looked
    return out


def children(pid, pmap=None):
    pmap = pmap if pmap is not None else ppid_map()
    return sorted(p for p, pp in pmap.items() if pp == pid)


def descendants(pid):
    pmap = ppid_map()
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop(), pmap)
        out += kids
        todo += kids
    return out


def rss_kib(pid):
    """Resident set size, KiB; 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    """Proportional set size (shared pages split among sharers), KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User+system CPU time of PIDS so far (processes that exited count 0)."""
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])   # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / _TICK
