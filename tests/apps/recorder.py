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
ENV_KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "CONTENT_TYPE",
            "CONTENT_LENGTH", "RAW_URI", "SCRIPT_NAME")


def _record(entry):
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _read_body(inp):
    """(length, sha256, first 200 bytes): read in pieces, so that a huge
    upload costs the worker no memory."""
    digest, head, length = hashlib.sha256(), b"", 0
    while True:
        piece = inp.read(65536)
        if not piece:
            return length, digest.hexdigest(), head
        digest.update(piece)
        if len(head) < 200:
            head = (head + piece)[:200]
        length += len(piece)


def application(environ, start_response):
    length, sha, head = _read_body(environ["wsgi.input"])
    entry = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "content_length": environ.get("CONTENT_LENGTH", ""),
        "body_len": length,
        "body_sha256": sha,
        "body_head": head.decode("latin-1"),
        "pid": os.getpid(),
        # what a conformance test compares: the request as the app sees it
        "env": {k: v for k, v in environ.items()
                if k.startswith("HTTP_") or k in ENV_KEYS},
    }
    _record(entry)
    if entry["path"] == "/pid":
        out = str(os.getpid()).encode()
    else:
        out = json.dumps(entry, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
