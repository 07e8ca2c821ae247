"""A WSGI app that records every request it is handed, for the hostile-input
tests: a request the server should have refused, or a second request
smuggled inside the first one's body, shows up in the record.

Each request appends one JSON line to the file named by RECORDER_LOG (one
write() on an O_APPEND descriptor, so lines from several workers never
interleave). The answer names what was seen, so a test can also compare
what the client got with what the app got.
"""
import hashlib
import json
import os

LOG = os.environ.get("RECORDER_LOG", "/dev/null")


def _record(entry):
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    entry = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "content_length": environ.get("CONTENT_LENGTH", ""),
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_head": body[:200].decode("latin-1"),
        "pid": os.getpid(),
    }
    _record(entry)
    if entry["path"] == "/pid":
        out = str(os.getpid()).encode()
    else:
        out = json.dumps(entry, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
