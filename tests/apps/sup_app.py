"""A WSGI app for the supervisor tests: a version string a reload test
rewrites, and views that are slow, hang or spin."""
import os
import time

VERSION = "one"


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
    body = f"{VERSION} {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
