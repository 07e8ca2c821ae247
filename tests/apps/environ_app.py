"""Answers with the CGI/WSGI keys of its environ as JSON, for comparing
servers (tests/test_worker_environ.py runs it under gunicorn too)."""
import json

KEYS = ("SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST", "wsgi.url_scheme",
        "SERVER_PROTOCOL", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "RAW_URI", "REQUEST_METHOD")


def application(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in KEYS}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
