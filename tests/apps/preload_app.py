"""[app] preload tests: what a worker knows about where it came from. A
forked worker still has the pid of the process that imported it
(IMPORT_PID, the template's); a reload test rewrites VERSION."""
import json
import os
import random
import sys
import time

VERSION = "one"
IMPORT_PID = os.getpid()
FIRST_DRAW = None           # this process's first random number, drawn on its first request


def info():
    global FIRST_DRAW
    if FIRST_DRAW is None:
        FIRST_DRAW = random.getrandbits(64)
    return {"version": VERSION, "pid": os.getpid(), "ppid": os.getppid(), "import_pid": IMPORT_PID,
            "first_draw": FIRST_DRAW}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        time.sleep(float(query or "1"))
    elif path == "/hang":
        time.sleep(3600)
    elif path == "/print":
        print(f"printed by {os.getpid()}")
        sys.stderr.write(f"written to stderr by {os.getpid()}\n")
    body = json.dumps(info()).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
