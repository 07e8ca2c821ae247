"""A WSGI app that takes SLOW_IMPORT seconds to import (a big Django
project does), for the readiness tests, and whose views sleep or fail on
request: /sleep?S, /fail (500 from the app)."""
import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    if path == "/fail":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"fail\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
