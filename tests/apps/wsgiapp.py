"""A plain WSGI app exercising the corners of PEP 3333, for the worker tests.

`application` answers by path; `validated` is the same app wrapped in
wsgiref.validate.validator with its warnings turned into errors, so that any
PEP 3333 violation by the server becomes a 500 and a logged traceback.
"""
import json
import os
import sys
import time
import warnings
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

MARKER_DIR = os.environ.get("WSGIAPP_MARKERS", "/tmp")
ENV_KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
    "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
    "wsgi.url_scheme", "RAW_URI",
)


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    """The environ (str values) and the body, read with read(n)."""
    inp = environ["wsgi.input"]
    chunks = []
    while True:
        data = inp.read(8192)
        if not data:
            break
        chunks.append(data)
    body = b"".join(chunks)
    env = {k: v for k, v in environ.items() if isinstance(v, str)}
    return _json(start_response, {"env": env, "body": body.decode("latin-1"),
                                  "body_len": len(body)})


def lines(environ, start_response):
    """The body through readline(), iteration and readlines()."""
    inp = environ["wsgi.input"]
    first = inp.readline()
    limited = inp.readline(3)
    rest_iter = [line for line in inp]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"first": first.decode(), "limited": limited.decode(),
                        "rest": [x.decode() for x in rest_iter]}).encode()]


def readlines(environ, start_response):
    got = environ["wsgi.input"].readlines()
    return _json(start_response, [x.decode() for x in got])


def upload_size(environ, start_response):
    """Streams a big body through read(n) and reports its size and RSS."""
    inp, total = environ["wsgi.input"], 0
    while True:
        data = inp.read(65536)
        if not data:
            break
        total += len(data)
    return _json(start_response, {"size": total, "rss_kb": _rss_kb()})


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_huge(environ, start_response):
    """read(SIZE) with a SIZE no server should allocate up front."""
    data = environ["wsgi.input"].read(1 << 40)
    return _json(start_response, {"size": len(data), "rss_kb": _rss_kb()})


def rss(environ, start_response):
    return _json(start_response, {"rss_kb": _rss_kb(), "pid": os.getpid()})


def gen(environ, start_response):
    """A generator without Content-Length: chunked for HTTP/1.1."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        for i in range(5):
            yield b"part %d\n" % i
            yield b""
    return body()


class Endless:
    """An endless iterable whose close() leaves a marker file behind."""

    def __init__(self, marker):
        self.marker = marker

    def __iter__(self):
        while True:
            time.sleep(0.01)
            yield b"x" * 65536

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def endless(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    name = environ["QUERY_STRING"] or "endless"
    return Endless(os.path.join(MARKER_DIR, name))


def write_api(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"then ")
    return [b"returned\n"]


def raise_before(environ, start_response):
    raise RuntimeError("boom before start_response")


def raise_after(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first part, "
        raise RuntimeError("boom after the headers")
    return body()


def raise_announced(environ, start_response):
    """Announces 1000 bytes, sends 5, then fails: the client must not be fooled."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000")])

    def body():
        yield b"short"
        raise RuntimeError("boom mid-body")
    return body()


def exc_info(environ, start_response):
    """The error-page path: start_response again with exc_info."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("replaced")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"error page\n"]


def exc_info_late(environ, start_response):
    """exc_info after the headers went out: start_response must re-raise."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise KeyError("late failure")
    except KeyError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"never sent"]


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
    return [b"no"]


def nonlatin_header(environ, start_response):
    start_response("200 OK", [("X-Name", "\u0100\u20ac")])
    return [b"no"]


def no_start(environ, start_response):
    return [b"forgot start_response"]


def status(environ, start_response):
    code = environ["QUERY_STRING"] or "204"
    if code in ("204", "304"):
        start_response(code + " Whatever", [])
        return [b""]
    start_response(code + " Whatever", [("Content-Type", "text/plain")])
    return [b"body\n"]


def file(environ, start_response):
    path = environ["QUERY_STRING"]
    f = open(path, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 65536)


def log(environ, start_response):
    print("hello from stdout")
    sys.stderr.write("line one\nline two\n")
    environ["wsgi.errors"].write("to wsgi.errors\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged\n"]


def sleep(environ, start_response):
    time.sleep(float(environ["QUERY_STRING"] or "1"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept\n"]


def inheritable_fds(environ, start_response):
    """Descriptors a child process of the app would inherit (beyond 0-2)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:
            pass
    return _json(start_response, fds)


def pid(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def sysinfo(environ, start_response):
    try:
        import django  # noqa: F401
        has_django = True
    except ImportError:
        has_django = False
    return _json(start_response, {
        "prefix": sys.prefix, "base_prefix": sys.base_prefix, "path": sys.path,
        "executable": sys.executable, "django": has_django, "cwd": os.getcwd(),
        "env": dict(os.environ), "stdout": repr(type(sys.stdout)),
        "dont_write_bytecode": sys.dont_write_bytecode,
        "whichlib": _module_attr("whichlib", "WHO"), "onlyenv": _module_attr("onlyenv", "X") == 1,
    })


def _module_attr(module, name):
    try:
        return getattr(__import__(module), name)
    except ImportError:
        return None


ROUTES = {
    "/echo": echo, "/lines": lines, "/readlines": readlines, "/upload": upload_size,
    "/rss": rss, "/read-huge": read_huge, "/gen": gen, "/endless": endless, "/write": write_api,
    "/raise-before": raise_before, "/raise-after": raise_after,
    "/raise-announced": raise_announced, "/exc-info": exc_info, "/exc-info-late": exc_info_late,
    "/bad-header": bad_header, "/nonlatin-header": nonlatin_header,
    "/no-start": no_start, "/status": status, "/file": file, "/log": log,
    "/sleep": sleep, "/pid": pid, "/inheritable-fds": inheritable_fds, "/sysinfo": sysinfo,
}


def application(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        return echo(environ, start_response)
    return route(environ, start_response)


validated = validator(application)
