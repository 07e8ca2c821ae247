"""[supervisor] threads tests: each view says when it ran, on which thread
of which worker (time.monotonic is one clock for every process)."""
import json
import os
import threading
import time


def application(environ, start_response):
    start = time.monotonic()
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        time.sleep(float(query or "0.2"))
    elif path == "/hang":
        time.sleep(3600)
    elif path == "/body":
        environ["wsgi.input"].read()
    body = json.dumps({"pid": os.getpid(), "thread": threading.current_thread().name, "start": start,
                       "end": time.monotonic(), "multithread": environ["wsgi.multithread"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
