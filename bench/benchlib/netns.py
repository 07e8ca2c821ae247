"""Several "hosts" on one machine, for multi-host setups in the tests and
the benchmark: network namespaces made with `ip netns`, a front one and N
host ones, each host joined to the front by a veth pair (10.203.N.1 on the
front's side, 10.203.N.2 on the host's). The addresses exist only inside
these namespaces; everything is deleted by close(). Needs root and
iproute2."""
import os
import shutil
import subprocess
import uuid

NET = "10.203"


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def available():
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip"):
        return "needs iproute2 (ip)"
    name = f"asprobe{uuid.uuid4().hex[:6]}"
    r = _ip("netns", "add", name, check=False)
    if r.returncode:
        return f"ip netns add: {r.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class Hosts:
    """A front namespace and N hosts."""

    def __init__(self, n):
        tag = uuid.uuid4().hex[:5]
        self.front = f"asf{tag}"
        self.hosts = [f"ash{i}{tag}" for i in range(1, n + 1)]
        self._veth = [(f"vf{i}{tag}", f"vh{i}{tag}") for i in range(1, n + 1)]
        self.made = []
        try:
            for ns in [self.front] + self.hosts:
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("-n", ns, "link", "set", "dev", "lo", "up")
            for i, (vf, vh) in enumerate(self._veth, 1):
                _ip("-n", self.front, "link", "add", vf, "type", "veth", "peer", "name", vh,
                    "netns", self.hosts[i - 1])
                _ip("-n", self.front, "addr", "add", f"{NET}.{i}.1/24", "dev", vf)
                _ip("-n", self.hosts[i - 1], "addr", "add", f"{NET}.{i}.2/24", "dev", vh)
                _ip("-n", self.front, "link", "set", "dev", vf, "up")
                _ip("-n", self.hosts[i - 1], "link", "set", "dev", vh, "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def addr(i):
        """Host I's address (1-based), as the front sees it."""
        return f"{NET}.{i}.2"

    @staticmethod
    def exec_in(ns):
        """argv prefix that runs a program in namespace NS (same pid: ip execs it)."""
        return ["ip", "netns", "exec", ns]

    def link(self, i, up):
        """Host I's side of its link up or down: down, nothing reaches it."""
        _ip("-n", self.hosts[i - 1], "link", "set", "dev", self._veth[i - 1][1], "up" if up else "down")

    def close(self):
        for ns in self.made:
            _ip("netns", "del", ns, check=False)
        self.made = []
