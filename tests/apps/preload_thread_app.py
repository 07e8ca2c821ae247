"""[app] preload: an app that starts a thread while it is imported. The
thread holds LOCK most of the time, so a fork almost always happens while
it is held; the app re-creates the lock and restarts the thread in the
child with os.register_at_fork, as libraries made for preforking servers
do. A worker serves only if the fork ran those hooks."""
import json
import os
import threading
import time

LOCK = threading.Lock()
TICKS = [0]


def tick():
    while True:
        with LOCK:
            TICKS[0] += 1
            time.sleep(0.005)
        time.sleep(0.0001)


def start():
    threading.Thread(target=tick, name="ticker", daemon=True).start()


def after_fork_in_child():
    global LOCK
    LOCK = threading.Lock()
    start()


start()
os.register_at_fork(after_in_child=after_fork_in_child)


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":     # keeps this worker busy: the next request goes elsewhere
        time.sleep(float(environ.get("QUERY_STRING") or "0"))
    if not LOCK.acquire(timeout=5):
        status, out = "500 Internal Server Error", {"error": "LOCK is held by a thread that does not exist"}
    else:
        LOCK.release()
        before = TICKS[0]
        time.sleep(0.1)
        alive = [t.name for t in threading.enumerate() if t.is_alive()]
        status, out = "200 OK", {"pid": os.getpid(), "threads": alive, "ticked": TICKS[0] - before}
    body = json.dumps(out).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
