"""The worker's getrandom() (worker/vgetrandom.c) seen from an app: bytes
from os.urandom() and the secrets module, from the request's thread or
from threads the app starts."""
import json
import os
import secrets
import threading
from urllib.parse import parse_qs

FIRST = None        # this process's first os.urandom(16), drawn on its first request


def draws(n):
    return [os.urandom(16).hex() for _ in range(n)]


def application(environ, start_response):
    global FIRST
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO", "/")
    if FIRST is None:
        FIRST = os.urandom(16).hex()
    out = {"pid": os.getpid(), "first": FIRST}
    if path == "/many":
        # One byte at a time, as random.SystemRandom does for secrets.choice().
        n = int(q.get("n", "100"))
        out["bytes"] = bytes(os.urandom(1)[0] for _ in range(n)).hex()
        out["token"] = secrets.token_urlsafe(32)
    elif path == "/fork":
        # The app forks, as some do for a subprocess of their own: the
        # child's draws must not repeat the parent's (the vDSO state is
        # wiped in the child).
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, "".join(draws(4)).encode())
            os._exit(0)
        os.close(w)
        mine = "".join(draws(4))
        with os.fdopen(r) as f:
            child = f.read()
        os.waitpid(pid, 0)
        out["parent"], out["child"] = mine, child
    elif path == "/threads":
        # Threads the app starts, one after the other and side by side.
        n, at_once = int(q.get("n", "8")), int(q.get("at_once", "4"))
        got = []
        lock = threading.Lock()

        def run():
            mine = draws(4)
            with lock:
                got.extend(mine)
        for start in range(0, n, at_once):
            ts = [threading.Thread(target=run) for _ in range(min(at_once, n - start))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        out["draws"] = got
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
