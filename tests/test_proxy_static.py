"""appstack-proxy static aliases: the nginx-style matrix of statuses,
validators, ranges, types and precompressed siblings."""
import gzip
import os
import socket
import time

import pytest

from conftest import wait_for
from proxyutil import Upstream, get, read_response, start_proxy

CSS = b"body { color: #123; }\n" * 50


@pytest.fixture
def site(tmpdir_short):
    static = os.path.join(tmpdir_short, "static")
    os.makedirs(os.path.join(static, "css"))
    os.makedirs(os.path.join(static, "emptydir"))
    os.makedirs(os.path.join(static, "withindex"))
    files = {
        "css/site.css": CSS,
        "app.js": b"console.log(1);\n",
        "logo.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
        "icon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "font.woff2": b"wOF2" + b"\0" * 60,
        "data.unknownext": b"???",
        "digits.txt": b"0123456789" * 10,
        "withindex/index.html": b"<p>index</p>",
    }
    for name, data in files.items():
        with open(os.path.join(static, name), "wb") as f:
            f.write(data)
    with open(os.path.join(static, "css/site.css.gz"), "wb") as f:
        f.write(gzip.compress(CSS))
    with open(os.path.join(tmpdir_short, "favicon.ico"), "wb") as f:
        f.write(b"ICO")
    up = Upstream()
    proxy = start_proxy(tmpdir_short, [up.addr], locations=f"""
[location /static/]
alias = {static}/
expires = 1d

[location = /favicon.ico]
alias = {tmpdir_short}/favicon.ico
""")
    try:
        yield proxy, static, up
    finally:
        proxy.stop()
        up.close()


def test_static_200_with_validators_and_expires(site):
    proxy, static, up = site
    r = get(proxy.port, "/static/css/site.css")
    assert r.status == 200
    assert r.body == CSS
    assert r.header("content-type") == "text/css"
    assert int(r.header("content-length")) == len(CSS)
    assert r.header("cache-control") == "max-age=86400"
    assert r.header("etag", "").startswith('"')
    assert r.header("last-modified", "").endswith("GMT")
    assert r.header("vary") == "Accept-Encoding"    # a .gz sibling exists
    assert up.requests == []                        # never reached the upstream


@pytest.mark.parametrize("name,ctype", [
    ("css/site.css", "text/css"),
    ("app.js", "javascript"),
    ("logo.png", "image/png"),
    ("icon.svg", "image/svg+xml"),
    ("font.woff2", "font/woff2"),
    ("data.unknownext", "application/octet-stream"),
])
def test_content_types(site, name, ctype):
    proxy, _, _ = site
    r = get(proxy.port, "/static/" + name)
    assert r.status == 200
    assert ctype in r.header("content-type")


def test_etag_stable_and_conditionals(site):
    proxy, static, _ = site
    a = get(proxy.port, "/static/app.js")
    b = get(proxy.port, "/static/app.js")
    assert a.header("etag") == b.header("etag")
    r = get(proxy.port, "/static/app.js", {"If-None-Match": a.header("etag")})
    assert r.status == 304 and r.body == b""
    assert r.header("etag") == a.header("etag")
    r = get(proxy.port, "/static/app.js", {"If-None-Match": '"other", W/' + a.header("etag")})
    assert r.status == 304
    r = get(proxy.port, "/static/app.js", {"If-None-Match": '"other"'})
    assert r.status == 200
    r = get(proxy.port, "/static/app.js", {"If-Modified-Since": a.header("last-modified")})
    assert r.status == 304
    r = get(proxy.port, "/static/app.js", {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert r.status == 200 and r.body == b"console.log(1);\n"
    # A changed file gets a new ETag.
    with open(os.path.join(static, "app.js"), "ab") as f:
        f.write(b"//more\n")
    c = get(proxy.port, "/static/app.js")
    assert c.header("etag") != a.header("etag")


def test_ranges(site):
    proxy, _, _ = site
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=0-9"})
    assert r.status == 206 and r.body == b"0123456789"
    assert r.header("content-range") == "bytes 0-9/100"
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=-3"})
    assert r.status == 206 and r.body == b"789"
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=95-"})
    assert r.status == 206 and r.body == b"56789"
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=98-500"})
    assert r.status == 206 and r.body == b"89"
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=100-"})
    assert r.status == 416 and r.header("content-range") == "bytes */100"
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=0-1,5-6"})
    assert r.status == 200 and len(r.body) == 100
    r = get(proxy.port, "/static/digits.txt", {"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert r.status == 200 and len(r.body) == 100


def test_head_and_keepalive_pipelining(site):
    proxy, _, _ = site
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s, s.makefile("rb") as f:
        s.sendall(b"HEAD /static/digits.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /static/digits.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_response(f, head_only=True)
        assert head.status == 200 and head.header("content-length") == "100"
        first = read_response(f)
        assert first.status == 200 and first.body.startswith(b"console.log(1);")
        second = read_response(f)
        assert second.status == 200 and second.body == b"0123456789" * 10


def test_gzip_sibling(site):
    proxy, _, _ = site
    r = get(proxy.port, "/static/css/site.css", {"Accept-Encoding": "br, gzip"})
    assert r.status == 200
    assert r.header("content-encoding") == "gzip"
    assert r.header("content-type") == "text/css"
    assert r.header("vary") == "Accept-Encoding"
    assert gzip.decompress(r.body) == CSS
    r = get(proxy.port, "/static/css/site.css", {"Accept-Encoding": "gzip;q=0"})
    assert r.header("content-encoding") is None and r.body == CSS


def test_exact_location_and_directories(site):
    proxy, _, _ = site
    r = get(proxy.port, "/favicon.ico")
    assert r.status == 200 and r.body == b"ICO"
    for path in ("/static/", "/static/emptydir/", "/static/emptydir", "/static/css"):
        r = get(proxy.port, path)
        assert r.status in (403, 404), path
        assert b"site.css" not in r.body
    r = get(proxy.port, "/static/withindex/")
    assert r.status == 200 and r.body == b"<p>index</p>"
    assert "text/html" in r.header("content-type")


def test_static_refuses_other_methods(site):
    proxy, _, up = site
    r = get(proxy.port, "/static/app.js", method="POST", body=b"x=1")
    assert r.status == 405
    assert "GET" in r.header("allow")
    assert up.requests == []


def test_large_file_and_sparse_gib_range(site):
    proxy, static, _ = site
    big = os.urandom(3 << 20)
    with open(os.path.join(static, "big.bin"), "wb") as f:
        f.write(big)
    r = get(proxy.port, "/static/big.bin")
    assert r.status == 200 and r.body == big
    sparse = os.path.join(static, "sparse.bin")
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
        f.seek((1 << 30) - 10)
        f.write(b"THE-END!!\n")
    t0 = time.monotonic()
    r = get(proxy.port, "/static/sparse.bin", {"Range": "bytes=-10"})
    assert r.status == 206 and r.body == b"THE-END!!\n"
    assert r.header("content-range") == f"bytes {(1 << 30) - 10}-{(1 << 30) - 1}/{1 << 30}"
    r = get(proxy.port, "/static/sparse.bin", method="HEAD")
    assert r.status == 200 and r.header("content-length") == str(1 << 30)
    assert time.monotonic() - t0 < 5     # nothing read the whole GiB


def test_alias_created_after_start(tmpdir_short):
    later = os.path.join(tmpdir_short, "later")
    proxy = start_proxy(tmpdir_short, ["127.0.0.1:9"], locations=f"[location /assets/]\nalias = {later}/\n")
    try:
        assert get(proxy.port, "/assets/a.txt").status == 404
        os.makedirs(later)
        with open(os.path.join(later, "a.txt"), "w") as f:
            f.write("here")
        wait_for(lambda: get(proxy.port, "/assets/a.txt").status == 200, timeout=5, what="alias picked up")
    finally:
        proxy.stop()
