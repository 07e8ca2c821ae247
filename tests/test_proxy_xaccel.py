"""X-Accel-Redirect through appstack-proxy with the Django example: a view
written as django-sendfile2's nginx backend writes it hands files to the
proxy, which serves them from an `internal = on` location with ranges,
conditional requests and the view's Content-Type and Content-Disposition;
the internal location cannot be requested directly, and no header value
reaches outside the static locations."""
import hashlib
import os

import pytest
import requests

from djangostack import django_stack
from proxyutil import get


@pytest.fixture(scope="module")
def stack():
    with django_stack(locations="[location /protected/]\nalias = {protected}/\ninternal = on\n") as st:
        data = os.urandom(3 << 20)
        with open(os.path.join(st.protected, "report.pdf"), "wb") as f:
            f.write(data)
        os.mkdir(os.path.join(st.protected, "sub dir"))
        with open(os.path.join(st.protected, "sub dir", "notes é.txt"), "w") as f:
            f.write("notes\n" * 100)
        os.symlink("/etc/passwd", os.path.join(st.protected, "escape.txt"))
        st.data = data
        yield st


AUTH = {"Cookie": "auth=yes"}


def test_view_hands_the_file_to_the_proxy(stack):
    r = requests.get(stack.base + "/edge/download/report.pdf", cookies={"auth": "yes"}, timeout=30)
    assert r.status_code == 200 and r.content == stack.data
    assert r.headers["Content-Type"] == "application/pdf"
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers["ETag"] and r.headers["Last-Modified"]
    assert "X-Accel-Redirect" not in r.headers
    r = requests.get(stack.base + "/edge/download/sub%20dir/notes%20%C3%A9.txt?attach=1", cookies={"auth": "yes"},
                     timeout=10)
    assert r.status_code == 200 and r.text == "notes\n" * 100
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''notes%20%C3%A9.txt"


def test_the_application_still_decides(stack):
    r = requests.get(stack.base + "/edge/download/report.pdf", timeout=10)
    assert r.status_code == 403 and r.text == "forbidden\n"
    r = requests.get(stack.base + "/edge/download/missing.pdf", cookies={"auth": "yes"}, timeout=10)
    assert r.status_code == 404


def test_ranges_and_conditional_requests(stack):
    r = get(stack.port, "/edge/download/report.pdf", {**AUTH, "Range": "bytes=1000-1999"})
    assert r.status == 206 and r.body == stack.data[1000:2000]
    assert r.header("content-range") == f"bytes 1000-1999/{len(stack.data)}"
    full = get(stack.port, "/edge/download/report.pdf", AUTH)
    etag, lm = full.header("etag"), full.header("last-modified")
    assert hashlib.sha256(full.body).digest() == hashlib.sha256(stack.data).digest()
    r = get(stack.port, "/edge/download/report.pdf", {**AUTH, "If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.header("etag") == etag
    r = get(stack.port, "/edge/download/report.pdf", {**AUTH, "If-Modified-Since": lm})
    assert r.status == 304
    r = get(stack.port, "/edge/download/report.pdf", {**AUTH, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert r.status == 200 and len(r.body) == len(stack.data)
    r = get(stack.port, "/edge/download/report.pdf", AUTH, method="HEAD")
    assert r.status == 200 and r.header("content-length") == str(len(stack.data)) and r.body == b""


def test_internal_location_is_404_to_clients(stack):
    for path in ("/protected/report.pdf", "/protected/", "/protected/sub%20dir/notes%20%C3%A9.txt"):
        r = get(stack.port, path)
        assert r.status == 404, path
        assert b"%PDF" not in r.body


@pytest.mark.parametrize("target", [
    "/protected/../appstack.ini",
    "/protected/%2e%2e/appstack.ini",
    "/protected/..%2fappstack.ini",
    "/protected/escape.txt",
    "/etc/passwd",
    "protected/report.pdf",
    "/protected/sub%00dir",
    "",
])
def test_traversal_in_the_header_is_refused(stack, target):
    r = get(stack.port, "/edge/accel?to=" + requests.utils.quote(target, safe=""))
    assert r.status in (404, 400) and b"[app]" not in r.body and b"root:" not in r.body
    assert b"should not be seen" not in r.body


def test_a_non_internal_location_serves_too(stack):
    css = next(os.path.join(dp, f) for dp, _, fs in os.walk(stack.static_root) for f in fs if f.endswith(".css"))
    rel = os.path.relpath(css, stack.static_root)
    r = get(stack.port, "/edge/accel?to=" + requests.utils.quote("/static/" + rel, safe=""))
    with open(css, "rb") as f:
        assert r.status == 200 and r.body == f.read()
    assert r.header("content-type") == "text/plain"     # the view's type wins, as with nginx
