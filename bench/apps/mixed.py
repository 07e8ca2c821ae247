"""A mix of fast and slow requests, like an app that mostly answers from
memory and sometimes waits on a database or an API: /fast sleeps 1 ms,
/slow 200 ms, /sleep?S S seconds, anything else answers at once.

The body says who served the request and when: "PID START END", the
CLOCK_MONOTONIC seconds the app began and ended, so that a client on the
same host can line requests up with the workers' busy and idle times."""
import os
import time

DELAYS = {"/fast": 0.001, "/slow": 0.2}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    delay = float(environ.get("QUERY_STRING") or 0) if path == "/sleep" else DELAYS.get(path, 0.0)
    t0 = time.monotonic()
    if delay:
        time.sleep(delay)
    body = f"{os.getpid()} {t0:.6f} {time.monotonic():.6f}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
