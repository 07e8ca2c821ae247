"""A WSGI app for the supervisor tests: a version string a reload test
rewrites, and views that are slow, hang, spin, or stop the worker in C."""
import os
import threading
import time

VERSION = "one"
HOARD = []


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        time.sleep(float(query or "1"))
    elif path == "/hang":
        time.sleep(3600)
    elif path == "/spin":
        while True:
            pass
    elif path == "/grow":
        # Memory the worker keeps (written, so it is resident): max_rss.
        HOARD.append(b"\x01" * (int(query) << 20))
    elif path == "/c-hold":
        hold_gil_in_c()
    elif path == "/gil-hog":
        # Answers, then a thread takes the GIL and never gives it back: the
        # worker's loop can no longer turn, outside any request.
        threading.Thread(target=lambda: (time.sleep(0.2), hold_gil_in_c()), daemon=True).start()
    body = f"{VERSION} {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def hold_gil_in_c():
    """One C call (sum over a range) that runs for hours without releasing
    the GIL or looking at signals."""
    return sum(range(10 ** 14))
