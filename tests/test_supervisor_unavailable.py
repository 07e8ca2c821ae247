"""When no worker can serve (the app fails to import), clients get a quick,
honest 503 with Retry-After, straight on appstackd's socket and through the
proxy, instead of a connection left waiting in the backlog; the traceback
is logged once; `supctl status` and `supctl reload` say that nothing
serves; the error a lazy importer hid is the one reported."""
import json
import os
import resource
import shutil
import socket
import time

from conftest import APPS, free_port, wait_for
from proxyutil import Proxy, proxy_config
from supervisorutil import Supervisor, sup_config

BROKEN = "import json\nimport no_such_module_for_appstack\n"
LAZY = """import importlib.util
import sys

spec = importlib.util.find_spec("lazy_part")
spec.loader = importlib.util.LazyLoader(spec.loader)
module = importlib.util.module_from_spec(spec)
sys.modules["lazy_part"] = module
spec.loader.exec_module(module)

from lazy_part import application  # noqa: E402,F401
"""
LAZY_PART = "import sys\nsys.stdout.no_such_attribute_for_appstack\n\ndef application(environ, start_response):\n    pass\n"


def write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def raw(port, request, timeout=5):
    """Sends REQUEST, returns (seconds until the answer was complete, bytes)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return time.monotonic() - t0, data


def start_broken(tmpdir, app_text=BROKEN, extra_files=(), extra=""):
    app = os.path.join(tmpdir, "app")
    os.makedirs(app, exist_ok=True)
    write(app, "myapp.py", app_text)
    for name, text in extra_files:
        write(app, name, text)
    port = free_port()
    sup = Supervisor(sup_config(tmpdir, port, app_dir=app, module="myapp:application", extra=extra), port)
    sup.wait_control()
    wait_for(lambda: sup.status()["last_failure"], timeout=20, what="a failed start")
    return sup, app


def test_app_that_cannot_import_gets_503_fast_direct_and_proxied(tmpdir_short):
    sup, app = start_broken(tmpdir_short)
    proxy = None
    try:
        took, data = raw(sup.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert took < 2, took
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), data
        assert b"\r\nRetry-After: " in head and b"Connection: close" in head
        assert b"Traceback" not in data and b"no_such_module" not in data     # never to the client
        took, data = raw(sup.port, b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 503 ") and data.endswith(b"\r\n\r\n"), data
        # A POST whose body follows the head gets the answer too.
        took, data = raw(sup.port, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        assert data.startswith(b"HTTP/1.1 503 "), data

        pport = free_port()
        proxy = Proxy(proxy_config(tmpdir_short, pport, [f"127.0.0.1:{sup.port}"], name="proxy.ini"), pport)
        took, data = raw(pport, b"GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert took < 2, took
        assert data.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: " in data, data

        st = sup.status()
        assert st["serving"] is False and st["answering_503"] is True and st["workers_ready"] == 0
        assert st["last_failure"]["failing"]
        assert "ModuleNotFoundError: No module named 'no_such_module_for_appstack'" in st["last_failure"]["text"]
        text = sup.supctl("status").stdout
        assert "no worker serves" in text and "503" in text

        # The traceback is logged once however often the start is retried.
        wait_for(lambda: sup.log_text().count("cannot load the app") >= 3, timeout=20, what="three attempts")
        assert sup.log_text().count("Traceback (most recent call last)") == 1, sup.log_text()

        # Fixed: the next attempt serves, and appstackd leaves the sockets to it.
        shutil.copy(os.path.join(APPS, "sup_app.py"), os.path.join(app, "myapp.py"))
        sup.wait_ready(2, timeout=40)
        took, data = raw(sup.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 "), data
        assert sup.status()["serving"] is True and sup.status()["answering_503"] is False
    finally:
        if proxy:
            proxy.stop()
        sup.stop()


def test_failed_reload_with_nothing_serving_says_so(tmpdir_short):
    sup, _ = start_broken(tmpdir_short)
    try:
        r = sup.supctl("reload")
        assert r.returncode == 1
        out = r.stdout + r.stderr
        assert "no worker serves" in out and "keeps serving" not in out, out
        assert "no_such_module_for_appstack" in out
        assert sup.status()["serving"] is False
    finally:
        sup.stop()


def test_error_hidden_by_a_lazy_importer_is_the_one_reported(tmpdir_short):
    sup, _ = start_broken(tmpdir_short, LAZY, [("lazy_part.py", LAZY_PART)])
    try:
        text = sup.status()["last_failure"]["text"]
        assert "ImportError: cannot import name 'application'" in text      # what CPython says
        assert "lazy importer" in text
        last = text.rstrip().splitlines()[-1]
        assert last.startswith("AttributeError:") and "no_such_attribute_for_appstack" in last, text
        assert "lazy_part.py" in text       # with the frame that raised it
        summary = sup.supctl("status").stdout
        assert "no_such_attribute_for_appstack" in summary
        assert sup.log_text().count("no_such_attribute_for_appstack'") >= 1
        assert json.loads(sup.supctl("status", "--json").stdout)["serving"] is False
    finally:
        sup.stop()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(s):
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_out_of_descriptors_pauses_accepts(tmpdir_short):
    """appstackd's own listens (the 503 answer, metrics =, the control
    socket) out of descriptors: the connections wait in the queues instead
    of making the loop spin on them, the shortage is logged a few times, not
    once per failed accept, and the waiting ones are served once
    descriptors are free again."""
    mport = free_port()
    sup, _ = start_broken(tmpdir_short, extra=f"metrics = 127.0.0.1:{mport}")
    pid = sup.proc.pid
    control = os.path.join(tmpdir_short, "run", "control.sock")
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    log_before = len(sup.log_text().splitlines())
    # Room for a few: those are held (1 s for a request head, then the
    # linger), the rest find no descriptor.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 4, old[1]))
    app, metrics, ctl = [], [], []
    try:
        for _ in range(40):
            app.append(socket.create_connection(("127.0.0.1", sup.port), timeout=10))
        for _ in range(10):     # within the metrics listen's 16 connections
            metrics.append(socket.create_connection(("127.0.0.1", mport), timeout=10))
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(control)
            ctl.append(s)
        time.sleep(0.5)         # the first accepts and the first pause
        cpu = cpu_seconds(pid)
        time.sleep(3)
        cpu = cpu_seconds(pid) - cpu
        added = sup.log_text().splitlines()[log_before:]
        # A loop that spins takes a core, or its share of a loaded machine
        # (several tenths of a second); one that rests wakes ten times a
        # second per socket for one failed accept each.
        assert cpu < 0.3, f"{cpu:.2f} s of CPU in 3 s out of descriptors: the accept loop spins"
        assert any("Too many open files" in line and "pausing accepts" in line for line in added), added
        assert len(added) < 30, f"{len(added)} log lines while out of descriptors:\n" + "\n".join(added[-30:])
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
        # Every connection that waited is served now.
        for s in app:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        for s in metrics:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        for s in app:
            data = read_all(s)
            assert data.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: " in data, data
        for s in metrics:
            data = read_all(s)
            assert data.startswith(b"HTTP/1.1 200 ") and b"appstack_workers" in data, data[:200]
        for s in ctl:
            s.close()
        assert json.loads(sup.supctl("status", "--json").stdout)["serving"] is False
    finally:
        for s in app + metrics + ctl:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
        sup.stop()
