"""A real Flask app (tests/apps/flaskapp.py, Debian's python3-flask) served
by appstack-worker."""
import shutil
import tempfile

import pytest
import requests

from conftest import free_port
from workerutil import Worker, worker_config


@pytest.fixture(scope="module")
def site():
    d = tempfile.mkdtemp(prefix="as-fl-", dir="/tmp")
    port = free_port()
    w = Worker(d, port, worker_config(d, port, module="flaskapp:app"))
    w.url = f"http://127.0.0.1:{port}"
    with w:
        yield w
    shutil.rmtree(d, ignore_errors=True)


def test_json(site):
    r = requests.get(site.url + "/json?a=1")
    assert r.json() == {"hello": "world", "args": {"a": "1"}}
    r = requests.post(site.url + "/json", json={"x": [1, 2, "\u20ac"]})
    assert r.json()["received"] == {"x": [1, 2, "\u20ac"]}


def test_redirect(site):
    r = requests.get(site.url + "/go", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/json?via=redirect")
    r = requests.get(site.url + "/go")
    assert r.json()["args"] == {"via": "redirect"}


def test_cookies_and_session(site):
    s = requests.Session()
    assert [s.get(site.url + "/count").json()["n"] for _ in range(3)] == [1, 2, 3]
    assert s.cookies["flavour"] == "plain" and "session" in s.cookies
    assert requests.get(site.url + "/count").json()["n"] == 1     # a new client starts over


def test_streamed_generator(site):
    r = requests.get(site.url + "/stream", stream=True)
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.text == "".join(f"row {i}\n" for i in range(50))


def test_chunked_request_body(site):
    # werkzeug reads a body without Content-Length thanks to wsgi.input_terminated
    r = requests.post(site.url + "/chunked-upload", data=(b"x" * 1000 for _ in range(100)))
    assert r.json() == {"size": 100000}
