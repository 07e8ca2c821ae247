"""An I/O-bound WSGI app: every request waits 10 ms (as on a database or
another service) and answers a few bytes. N threads of one worker can
serve at most N x 100 requests a second."""
import time

BODY = b"slept 10 ms\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    time.sleep(0.010)
    start_response("200 OK", HEADERS)
    return [BODY]
