"""Compression in appstack-proxy: gzip and brotli of static files and of
upstream responses, chosen by Accept-Encoding and its q-values, for the
compress_types only, above gzip_min_length, never for ranges or an encoded
response, with Vary; a streamed Django response arrives compressed and piece
by piece; precompressed siblings; HTTP/2. Bodies are decoded with Python's
zlib and brotli (python3-brotli) and curl --compressed."""
import os
import socket
import subprocess
import threading
import time
import zlib

import brotli
import pytest

from conftest import free_port
from djangostack import django_stack
from proxyutil import Proxy, Upstream, get, proxy_config

TYPES = {   # extension: the type /etc/mime.types gives it, all in compress_types by default
    "html": "text/html", "css": "text/css", "txt": "text/plain", "js": "text/javascript",
    "json": "application/json", "svg": "image/svg+xml",
}


def text(n, seed):
    words = [f"w{seed}{i:03x}" for i in range(300)]
    return " ".join(words[(i * 7919) % 300] for i in range(n)).encode()


def gunzip(b):
    return zlib.decompress(b, 31)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("compress"))
    root = os.path.join(tmp, "s")
    os.mkdir(root)
    files = {}
    for ext in TYPES:
        files[ext] = text(4000, ext)
        with open(os.path.join(root, f"f.{ext}"), "wb") as f:
            f.write(files[ext])
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"tiny\n")
    with open(os.path.join(root, "pic.png"), "wb") as f:
        f.write(text(2000, "png"))
    # precompressed siblings, deliberately different from an on-the-fly result
    with open(os.path.join(root, "pre.css"), "wb") as f:
        f.write(text(3000, "pre"))
    with open(os.path.join(root, "pre.css.gz"), "wb") as f:
        f.write(zlib.compress(b"from the .gz sibling", wbits=31))
    with open(os.path.join(root, "pre.css.br"), "wb") as f:
        f.write(brotli.compress(b"from the .br sibling"))

    def handler(req):
        body = text(3000, "up")
        if req.target == "/encoded":
            z = zlib.compress(body, wbits=31)
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(z)) + z
        if req.target == "/range":
            return (b"HTTP/1.1 206 Partial Content\r\nContent-Type: text/html\r\nContent-Range: bytes 0-999/3000\r\n"
                    b"Content-Length: 1000\r\n\r\n") + body[:1000]
        if req.target == "/notransform":
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: no-transform\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)) + body
        if req.target == "/binary":
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        if req.target == "/etag":
            return (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: "v1"\r\nVary: Cookie\r\n'
                    b"Content-Length: %d\r\n\r\n" % len(body)) + body
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    up = Upstream(handler)
    port = free_port()
    cfg = proxy_config(tmp, port, [up.addr], f"[location /s/]\nalias = {root}/\n",
                       extra="gzip = on\nbrotli = on\ngzip_min_length = 100")
    with open(cfg, "a") as f:
        f.write("")
    # an h2c listen beside it for HTTP/2 clients
    p = Proxy(cfg, port)
    p.files, p.root, p.upbody = files, root, text(3000, "up")
    yield p
    p.stop()
    up.close()


def curl(port, path, *args):
    r = subprocess.run(["curl", "-sS", "-D", "-", "-o", "-", *args, f"http://127.0.0.1:{port}{path}"],
                       capture_output=True, timeout=30)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("ext", sorted(TYPES))
def test_static_text_types_decode_to_the_original(front, ext):
    original = front.files[ext]
    r = get(front.port, f"/s/f.{ext}", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("content-encoding") == "gzip" and r.header("content-type") == TYPES[ext]
    assert gunzip(r.body) == original and len(r.body) < len(original) // 2
    assert r.header("vary") == "Accept-Encoding" and r.header("etag").startswith('W/"')
    r = get(front.port, f"/s/f.{ext}", {"Accept-Encoding": "br"})
    assert r.header("content-encoding") == "br" and brotli.decompress(r.body) == original
    status, headers, body = curl(front.port, f"/s/f.{ext}", "--compressed")
    assert status == 200 and headers["content-encoding"] == ["br"] and body == original
    r = get(front.port, f"/s/f.{ext}")
    assert r.header("content-encoding") is None and r.body == original and r.header("vary") == "Accept-Encoding"


@pytest.mark.parametrize("ext", sorted(TYPES))
def test_upstream_text_types_decode_to_the_original(tmp_path, ext):
    body = text(3000, ext)
    up = Upstream(lambda req: b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                  % (TYPES[ext].encode(), len(body)) + body)
    port = free_port()
    p = Proxy(proxy_config(str(tmp_path), port, [up.addr], extra="gzip = on\nbrotli = on"), port)
    try:
        for ae, decode in (("gzip", gunzip), ("br", brotli.decompress)):
            r = get(port, "/x", {"Accept-Encoding": ae})
            assert r.status == 200 and r.header("content-encoding") == ae
            assert r.header("transfer-encoding") == "chunked" and r.header("content-length") is None
            assert decode(r.body) == body and r.header("vary") == "Accept-Encoding"
        status, headers, got = curl(port, "/x", "--compressed")
        assert headers["content-encoding"] == ["br"] and got == body
    finally:
        p.stop()
        up.close()


@pytest.mark.parametrize("ae,want", [
    ("gzip, deflate, br", "br"),
    ("gzip;q=1.0, br;q=0.5", "gzip"),
    ("br;q=0, gzip", "gzip"),
    ("*", "br"),
    ("*;q=0.5, br;q=0", "gzip"),
    ("gzip;q=0, br;q=0", None),
    ("identity;q=1, gzip;q=0.5", None),
    ("deflate", None),
    ("x-gzip", "gzip"),
    ("GZIP;Q=0.3, Br;q=0.2", "gzip"),
])
def test_accept_encoding_q_values(front, ae, want):
    r = get(front.port, "/s/f.html", {"Accept-Encoding": ae})
    assert r.header("content-encoding") == want
    r = get(front.port, "/up", {"Accept-Encoding": ae})
    assert r.header("content-encoding") == want


def test_ranges_are_never_compressed(front):
    r = get(front.port, "/s/f.html", {"Accept-Encoding": "gzip, br", "Range": "bytes=10-99"})
    assert r.status == 206 and r.header("content-encoding") is None
    assert r.body == front.files["html"][10:100] and r.header("vary") == "Accept-Encoding"
    r = get(front.port, "/range", {"Accept-Encoding": "gzip, br"})
    assert r.status == 206 and r.header("content-encoding") is None and r.body == front.upbody[:1000]


def test_never_twice_nor_against_no_transform(front):
    r = get(front.port, "/encoded", {"Accept-Encoding": "gzip, br"})
    assert r.header("content-encoding") == "gzip" and gunzip(r.body) == front.upbody
    r = get(front.port, "/notransform", {"Accept-Encoding": "gzip, br"})
    assert r.header("content-encoding") is None and r.body == front.upbody


def test_other_types_and_small_bodies_go_as_they_are(front):
    for path in ("/s/pic.png", "/binary", "/s/small.txt"):
        r = get(front.port, path, {"Accept-Encoding": "gzip, br"})
        assert r.status == 200 and r.header("content-encoding") is None, path
        assert r.header("vary") is None, path


def test_upstream_validators_and_vary(front):
    r = get(front.port, "/etag", {"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") == "gzip" and r.header("etag") == 'W/"v1"'
    assert r.header("vary") == "Accept-Encoding"    # the last of the two Vary lines
    assert b"Vary: Cookie" in r.raw_head and b"Accept-Ranges" not in r.raw_head


def test_precompressed_siblings_are_preferred(front):
    r = get(front.port, "/s/pre.css", {"Accept-Encoding": "gzip, br"})
    assert r.header("content-encoding") == "br" and brotli.decompress(r.body) == b"from the .br sibling"
    r = get(front.port, "/s/pre.css", {"Accept-Encoding": "gzip"})
    assert r.header("content-encoding") == "gzip" and gunzip(r.body) == b"from the .gz sibling"
    assert r.header("etag").startswith('"')      # the sibling's own validators
    r = get(front.port, "/s/pre.css", {"Accept-Encoding": "gzip;q=0.1, br;q=0"})
    assert gunzip(r.body) == b"from the .gz sibling"


def test_http2_client(front, tmp_path):
    port = free_port()
    cfg = open(front.config).read().replace(f"127.0.0.1:{front.port}", f"127.0.0.1:{port} http2")
    path = tmp_path / "h2.ini"
    path.write_text(cfg)
    p = Proxy(str(path), port)
    try:
        for target, original in (("/s/f.css", front.files["css"]), ("/up", front.upbody)):
            status, headers, body = curl(port, target, "--http2-prior-knowledge", "--compressed")
            assert status == 200 and headers["content-encoding"] == ["br"] and body == original
            status, headers, body = curl(port, target, "--http2-prior-knowledge", "-H", "Accept-Encoding: gzip")
            assert headers["content-encoding"] == ["gzip"] and gunzip(body) == original
    finally:
        p.stop()


# Bodies on both sides of the 256 KiB up to which an upstream body of known
# length is gathered and gzipped in one libdeflate call (above it, and
# without a length, zlib's stream), and of the 1 MiB up to which a static
# file is compressed on the fly (one libdeflate call), in an order that
# makes the proxy reuse a kept gathering buffer or stream of another size.
WHOLE_MAX = 256 << 10
STATIC_MAX = 1 << 20
SIZES = (20, 250, 763, 1786, 16122, 70000, WHOLE_MAX - 1, WHOLE_MAX, WHOLE_MAX + 1, 300000,
         30, 5000, STATIC_MAX, STATIC_MAX + 1, 1786)


def chunked(b, piece=65536):
    out = b"".join(b"%x\r\n%s\r\n" % (len(b[i:i + piece]), b[i:i + piece]) for i in range(0, len(b), piece))
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("level", [1, 9])
def test_whole_and_streamed_bodies_decode_at_every_size(tmp_path, level):
    root = tmp_path / "s"
    root.mkdir()
    bodies = {n: (text(n // 4 + 1, f"s{n}") * 2)[:n] for n in SIZES}
    for n, b in bodies.items():
        (root / f"{n}.txt").write_bytes(b)

    def handler(req):
        kind, n = req.target.strip("/").split("/")
        b = bodies[int(n)]
        if kind == "chunked":
            return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b)
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(b) + b

    up = Upstream(handler)
    port = free_port()
    p = Proxy(proxy_config(str(tmp_path), port, [up.addr], f"[location /s/]\nalias = {root}/\n",
                           extra=f"gzip = on\ngzip_min_length = 20\ngzip_comp_level = {level}"), port)
    try:
        for n in SIZES:
            for path in (f"/s/{n}.txt", f"/length/{n}", f"/chunked/{n}"):
                r = get(port, path, {"Accept-Encoding": "gzip"})
                assert r.status == 200, path
                if path.startswith("/s/") and n > STATIC_MAX:
                    # too big to encode on the fly: as it is, with sendfile
                    assert r.header("content-encoding") is None and r.body == bodies[n], path
                    continue
                assert r.header("content-encoding") == "gzip" and r.header("vary") == "Accept-Encoding", path
                assert gunzip(r.body) == bodies[n] and (len(r.body) < n or n < 100), path
                if path.startswith("/s/"):
                    assert int(r.header("content-length")) == len(r.body), path
                else:
                    assert r.header("transfer-encoding") == "chunked", path
    finally:
        p.stop()
        up.close()


def test_off_by_default(tmp_path):
    up = Upstream(lambda req: b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 3000\r\n\r\n" + b"a" * 3000)
    port = free_port()
    p = Proxy(proxy_config(str(tmp_path), port, [up.addr]), port)
    try:
        r = get(port, "/", {"Accept-Encoding": "gzip, br"})
        assert r.header("content-encoding") is None and r.header("vary") is None and len(r.body) == 3000
    finally:
        p.stop()
        up.close()


def test_streamed_django_response_arrives_compressed_and_incrementally():
    with django_stack("gzip = on\nbrotli = on") as st:
        for ae, decoder in (("gzip", zlib.decompressobj(31)), ("br", brotli.Decompressor())):
            if os.path.exists(st.gate):
                os.unlink(st.gate)
            s = socket.create_connection(("127.0.0.1", st.port), timeout=20)
            s.sendall(f"GET /edge/stream HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: {ae}\r\n"
                      "Connection: close\r\n\r\n".encode())
            f = s.makefile("rb")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += f.readline()
            assert b"Content-Encoding: " + ae.encode() in head and b"Transfer-Encoding: chunked" in head
            # the first part decodes while the view still waits at the gate
            got = b""
            while b"</p>" not in got:
                size = int(f.readline(), 16)
                assert size, "the body ended before the gate opened"
                chunk = f.read(size)
                f.readline()
                got += decoder.decompress(chunk) if ae == "gzip" else decoder.process(chunk)
            assert got.startswith(b"<p>first part") and b"later part" not in got
            open(st.gate, "w").close()
            while True:
                size = int(f.readline(), 16)
                if not size:
                    break
                chunk = f.read(size)
                f.readline()
                got += decoder.decompress(chunk) if ae == "gzip" else decoder.process(chunk)
            s.close()
            assert got.count(b"later part") == 3 and got.endswith(b"</p>\n")
        r = get(st.port, "/edge/page", {"Accept-Encoding": "gzip"})
        assert r.header("content-encoding") == "gzip" and b"row 399" in gunzip(r.body)
