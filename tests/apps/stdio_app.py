"""A WSGI app that uses its stdio the ways real apps and libraries do:
the binary buffer, reconfigure(), fileno() (faulthandler, subprocesses),
raw writes to fds 1 and 2 from C, logging at several levels, a traceback
printed piecewise. Each output carries the marker from the query string."""
import ctypes
import faulthandler
import logging
import subprocess
import sys
import threading
import traceback

log = logging.getLogger("stdio_app")
log.addHandler(logging.StreamHandler(sys.stderr))
log.setLevel(logging.DEBUG)
out_log = logging.getLogger("stdio_app.out")
out_log.addHandler(logging.StreamHandler(sys.stdout))
out_log.propagate = False
faulthandler.enable()               # needs sys.stderr.fileno()
libc = ctypes.CDLL(None, use_errno=True)


def stdio(m):
    print(f"print {m}")
    sys.stdout.buffer.write(f"buffer {m}\n".encode())
    sys.stdout.flush()
    sys.stdout.reconfigure(errors="replace")
    sys.stderr.write(f"stderr {m}\n")
    msg = f"cwrite {m}\n".encode()
    libc.write(2, msg, len(msg))
    subprocess.run(["sh", "-c", f"echo subout {m}; echo suberr {m} >&2"], check=True)
    subprocess.run(["echo", f"subexplicit {m}"], stdout=sys.stdout, check=True)
    log.debug("logdebug %s", m)
    log.info("loginfo %s", m)
    log.warning("logwarning %s", m)
    log.error("logerror %s\nsecond line", m)
    out_log.critical("logcritical %s", m)
    print(f"<3>prefixed {m}")
    try:
        raise KeyError(f"inner {m}")
    except KeyError:
        try:
            raise ValueError(f"printed {m}")
        except ValueError:
            traceback.print_exc()
    faulthandler.dump_traceback(all_threads=False)
    t = threading.Thread(target=lambda: 1 / 0, name=f"thread-{m}")
    t.start()
    t.join()
    return {"isatty": sys.stdout.isatty(), "fileno": [sys.stdout.fileno(), sys.stderr.fileno()],
            "buffer": type(sys.stdout.buffer).__name__, "type": type(sys.stdout).__name__,
            "line_buffering": sys.stdout.line_buffering, "errors_is_stderr": None}


def application(environ, start_response):
    import json
    m = environ.get("QUERY_STRING", "")
    info = stdio(m)
    info["errors_is_stderr"] = environ["wsgi.errors"] is sys.stderr
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
