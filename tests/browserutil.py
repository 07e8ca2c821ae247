"""Headless Chromium driven over the DevTools protocol (python3-websocket),
with a private profile whose certificate store trusts a test CA, as a
person's browser would trust a public one."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0"]


class Browser:
    def __init__(self, ca_pem=None):
        self.home = tempfile.mkdtemp(prefix="as-chromium-", dir="/tmp")
        profile = os.path.join(self.home, "profile")
        env = dict(os.environ, HOME=self.home)
        if ca_pem:
            nssdb = os.path.join(self.home, ".pki", "nssdb")
            os.makedirs(nssdb)
            subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True,
                           capture_output=True, timeout=30)
            subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "appstack test CA",
                            "-i", ca_pem], check=True, capture_output=True, timeout=30)
        self.log = open(os.path.join(self.home, "chromium.log"), "wb")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium did not start:\n" + open(self.log.name, errors="replace").read())
            time.sleep(0.1)
        self.port = int(open(port_file).read().split()[0])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10))
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def load(self, url, timeout=30):
        """Navigates and waits for the load event; returns the navigation's result."""
        self.call("Page.enable")
        self.events.clear()
        nav = self.call("Page.navigate", url=url)
        self.load_wait(timeout)
        return nav

    def load_wait(self, timeout=30):
        """Waits for the next load event (after a navigation the page started)."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError("the page did not load")
            self.events.append(json.loads(self.ws.recv()))

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        except Exception:   # noqa: BLE001 - the browser may be gone
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)
