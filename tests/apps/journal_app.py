"""A WSGI app for the journal tests: writes to stdout (also bytes that are
not UTF-8), to stderr through logging, raises, sleeps, and floods stdout on
request."""
import logging
import sys
import time

log = logging.getLogger("journal_app")
log.addHandler(logging.StreamHandler(sys.stderr))
log.setLevel(logging.INFO)


def application(environ, start_response):
    path, arg = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/print":
        print("app-print " + arg)
    elif path == "/bytes":
        sys.stdout.flush()
        sys.stdout.buffer.write(b"app-print " + arg.encode() + b" \xff\xfe\n")
        sys.stdout.buffer.flush()
    elif path == "/log":
        log.warning("app-log %s", arg)
    elif path == "/raise":
        raise ValueError("journal-test-boom " + arg)
    elif path == "/sleep-raise":     # [supervisor] threads: raises while another request runs
        time.sleep(0.3)
        raise ValueError("journal-test-boom " + arg)
    elif path == "/sleep":
        time.sleep(float(arg))
    elif path == "/flood":
        marker, _, count = arg.partition("-")
        for i in range(int(count)):
            print(f"flood {marker} {i:05d} " + "x" * 200)
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
