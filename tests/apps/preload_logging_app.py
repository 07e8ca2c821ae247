"""[app] preload: a thread started at import logs without pause through a
slow handler, so the handler's lock is held at almost every instant; a
fork then copies a locked lock. A request logs through the same handler:
it deadlocks unless logging's locks were re-created after the fork."""
import io
import json
import logging
import os
import threading
import time


class SlowHandler(logging.StreamHandler):
    def emit(self, record):     # runs with the handler's lock held
        time.sleep(0.005)
        super().emit(record)


log = logging.getLogger("preload-test")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(SlowHandler(io.StringIO()))


def chatter():
    while True:
        log.info("background")


threading.Thread(target=chatter, name="chatter", daemon=True).start()
time.sleep(0.05)


def application(environ, start_response):
    t0 = time.monotonic()
    log.info("request in %d", os.getpid())
    body = json.dumps({"pid": os.getpid(), "logged_in": time.monotonic() - t0}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
