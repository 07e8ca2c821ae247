"""An app that fails to import at start: appstackd stays up, says why in
`supctl status` and in STATUS=, retries with backoff instead of a fork
storm, and `supctl reload` after the file is fixed brings the site up
through the proxy."""
import os
import shutil
import socket
import threading
import time

from conftest import APPS, wait_for
from opsutil import get_status, ops_stack  # noqa: F401

BROKEN = "import no_such_dependency_here\n\napplication = None\n"


class Notify:
    """A NOTIFY_SOCKET that keeps every STATUS= it is sent."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.path, self.lines, self.done = path, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                self.lines += self.sock.recv(4096).decode().splitlines()
            except socket.timeout:
                pass

    def statuses(self):
        return [x[7:] for x in list(self.lines) if x.startswith("STATUS=")]

    def close(self):
        self.done.set()
        self.thread.join()
        self.sock.close()


def test_app_failing_to_import_then_fixed_and_reloaded(ops_stack, tmpdir_short):
    app_dir = os.path.join(tmpdir_short, "app")
    os.makedirs(app_dir)
    with open(os.path.join(app_dir, "opsapp.py"), "w") as f:
        f.write(BROKEN)
    notify = Notify(os.path.join(tmpdir_short, "notify.sock"))
    try:
        s = ops_stack(wait=False, module="opsapp:application", chdir=app_dir, workers=2,
                      env={"NOTIFY_SOCKET": notify.path})
        wait_for(lambda: any("no_such_dependency_here" in x for x in notify.statuses()), timeout=30,
                 what="the import error in STATUS=")
        t0 = time.monotonic()
        time.sleep(3)
        assert s.master.alive(), s.log_text()
        st = s.status()
        assert st["last_failure"]["failing"] and "no_such_dependency_here" in st["last_failure"]["text"]
        text = s.supctl("status")
        assert text.returncode == 0 and "no_such_dependency_here" in text.stdout, text
        # Backoff: the attempts thin out (0.1, 0.2, 0.4 ... s), no fork storm.
        attempts = s.log_text(10**6).count("cannot load the app")
        assert 2 <= attempts <= 12, (attempts, time.monotonic() - t0)

        shutil.copy(os.path.join(APPS, "hello.py"), os.path.join(app_dir, "opsapp.py"))
        r = s.supctl("reload")
        assert r.returncode == 0, r
        wait_for(lambda: get_status(s.port) == 200, timeout=20, what="200 through the proxy")
        assert s.status()["last_failure"] is None or not s.status()["last_failure"]["failing"]
        wait_for(lambda: any("no_such_dependency_here" not in x for x in notify.statuses()[-1:]),
                 timeout=10, what="STATUS= without the error")
        assert "READY=1" in notify.lines
    finally:
        notify.close()
