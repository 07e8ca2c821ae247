"""The master of appstack-proxy never touches OpenSSL: the certificate
pairs are checked in a short-lived child and loaded by each serving
process, the ticket secret comes from getrandom, so the master keeps none
of libcrypto's pages beyond what loading the library costs any process
(docs/proxy.md, "Memory"), through a start, a reload and a bad pair at a
reload. A serving process that cannot load the pairs (a file changed
after the master's check) exits instead of serving TLS without them, and
the next one starts once the pair is good again."""
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from conftest import free_port, wait_for
from proxyutil import Proxy, Upstream, ok, proxy_config, read_response
from tlsutil import CA
from workerutil import sanitized

# What one more page fault (a 64 KiB fault-around) may add.
SLACK_KIB = 64
MASTER_LIMIT_KIB = 8 * 1024     # the master's whole RSS, idle with a TLS listen


def libcrypto_rss_kib(pid):
    """The master's resident pages of libcrypto, all its mappings."""
    total, name = 0, ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                name = head[5] if len(head) > 5 else ""
            elif head and head[0] == "Rss:" and "libcrypto" in name:
                total += int(head[1])
    return total


def loaded_only_kib():
    """What a process that loads libcrypto and calls nothing in it holds
    of it: the dynamic loader's relocations and the library's constructors."""
    code = (inspect.getsource(libcrypto_rss_kib)
            + "import ctypes, os\nctypes.CDLL('libcrypto.so.3')\nprint(libcrypto_rss_kib(os.getpid()))\n")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=True)
    return int(r.stdout)


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    ca = CA(str(tmp_path_factory.mktemp("ca")))
    return ca, ca.issue(["localhost"]), ca.issue(["localhost"], stem="second"), ca.issue(["other.test"])


def tls_proxy(tmpdir, up, live, workers):
    port = free_port()
    cfg = proxy_config(tmpdir, port, [up.addr], workers=workers,
                       extra=f"certificate = {live[0]}\ncertificate_key = {live[1]}\n")
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace(f"listen = 127.0.0.1:{port}", f"listen = 127.0.0.1:{port} ssl"))
    return Proxy(cfg, port)


def place(live, pair):
    for dst, src in zip(live, pair):
        shutil.copyfile(src, dst + ".new")
        os.rename(dst + ".new", dst)


def fetch(port, ca, path="/"):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ca.client_context().wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            r = read_response(t.makefile("rb"))
            return r.status, t.getpeercert()["serialNumber"]


def serial(pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", pem], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().split("=")[1]


def live_proxy(tmpdir, first, workers):
    """(upstream, live pair paths, proxy) serving the pair FIRST from files
    a test may then replace."""
    up = Upstream(lambda req: ok(b"fine"))
    live = (os.path.join(tmpdir, "live.pem"), os.path.join(tmpdir, "live.key"))
    place(live, first)
    return up, live, tls_proxy(tmpdir, up, live, workers=workers)


def test_master_keeps_no_libcrypto_pages_through_start_reload_and_a_bad_pair(tmpdir_short, ca):
    ca, first, second, other = ca
    up, live, proxy = live_proxy(tmpdir_short, first, workers=2)
    bound = loaded_only_kib() + SLACK_KIB
    master = proxy.proc.pid
    try:
        wait_for(lambda: len(proxy.serving()) == 2, timeout=5, what="two serving processes")
        assert fetch(proxy.port, ca) == (200, serial(first[0]))
        assert libcrypto_rss_kib(master) <= bound, f"at start: {libcrypto_rss_kib(master)} KiB > {bound}"
        if not sanitized():     # ASan's shadow memory is not the proxy's
            assert vmrss_kib(master) < MASTER_LIMIT_KIB, f"master RSS {vmrss_kib(master)} KiB"
        # A reload with a new pair: checked aside, loaded by the serving processes.
        place(live, second)
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: proxy.log_text().count("reloaded") == 1, timeout=10, what="the reload")
        wait_for(lambda: fetch(proxy.port, ca)[1] == serial(second[0]), timeout=5, what="the new certificate")
        assert libcrypto_rss_kib(master) <= bound, f"after a reload: {libcrypto_rss_kib(master)} KiB > {bound}"
        # A mismatched pair: the check's FILE:LINE message, then the verdict.
        shutil.copyfile(other[1], live[1])
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the running configuration" in proxy.log_text(), timeout=10, what="the verdict")
        log = proxy.log_text()
        error = log.index(f"{proxy.config}:5: certificate_key {live[1]}: not the key of the certificate before it")
        assert error < log.index("keeping the running configuration"), log
        assert fetch(proxy.port, ca) == (200, serial(second[0]))
        assert libcrypto_rss_kib(master) <= bound, f"after a bad pair: {libcrypto_rss_kib(master)} KiB > {bound}"
    finally:
        proxy.stop()
        up.close()


def test_a_serving_process_that_cannot_load_the_pair_exits_and_the_next_one_serves(tmpdir_short, ca):
    ca, first, second, other = ca
    up, live, proxy = live_proxy(tmpdir_short, first, workers=1)
    try:
        [pid] = proxy.serving()
        assert fetch(proxy.port, ca)[0] == 200
        # The key changes behind the master's back (no reload): the process
        # that replaces a dead one finds a pair that does not load.
        shutil.copyfile(other[1], live[1])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "do not load (above): this proxy process exits" in proxy.log_text(), timeout=10,
                 what="the serving process's refusal")
        wait_for(lambda: "exited with status 1" in proxy.log_text(), timeout=5, what="the master's word on it")
        assert "not the key of the certificate before it" in proxy.log_text()
        # Nothing serves TLS without its certificate meanwhile; once the
        # pair is whole again, the next attempt serves it.
        place(live, first)
        assert fetch(proxy.port, ca)[0] == 200      # waits in the queue for a process that loaded it
        assert pid not in proxy.serving()
    finally:
        proxy.stop(deaths_expected=True)
        up.close()
