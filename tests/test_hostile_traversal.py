"""Static aliases against the spellings tests/test_proxy_traversal.py does
not try: double and triple encoding, raw and encoded backslashes, overlong
UTF-8, hard-to-see Unicode, trailing dots and spaces, path parameters,
symlink chains and an exact-match alias. A secret planted next to the alias
root (and /etc/passwd) must never appear in any answer; an answer is a
refusal, a file from inside the root, or the upstream's."""
import os

import pytest

from proxyutil import Upstream, ok, raw_request, start_proxy

SECRET = b"HOSTILE-SECRET-outside-the-alias"
INSIDE = {b"inside-ok", b"inside-dots", b"from-upstream"}

ENCODED = [
    # double and triple percent-encoding of "." "/" and "\"
    "/static/%252e%252e%252fsecret.txt",
    "/static/%25252e%25252e/secret.txt",
    "/static/%25%32%65%25%32%65/secret.txt",
    "/static/..%252fsecret.txt",
    "/static/%%32%65%%32%65/secret.txt",
    "/static/%2%65%2%65/secret.txt",
    "/static/%u002e%u002e/secret.txt",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    # backslashes, raw and encoded, alone and mixed with slashes
    "/static/..\\secret.txt",
    "/static/\\..\\secret.txt",
    "/static/sub\\..\\..\\secret.txt",
    "/static/..%5csecret.txt",
    "/static/%5c..%5c..%5csecret.txt",
    "/static/..%5c/secret.txt",
    "/static/%255c..%255csecret.txt",
    # overlong and invalid UTF-8 for "." "/" "\"
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/%c0%2e%c0%2e/secret.txt",
    "/static/%e0%80%ae%e0%80%ae/secret.txt",
    "/static/%f0%80%80%ae%f0%80%80%ae/secret.txt",
    "/static/..%c0%afsecret.txt",
    "/static/..%e0%80%afsecret.txt",
    "/static/..%c1%9csecret.txt",
    "/static/%c0%ae%c0%ae%c0%afsecret.txt",
    # hard-to-see Unicode: fullwidth and leader dots, zero-width, bidi, NBSP
    "/static/%ef%bc%8e%ef%bc%8e/secret.txt",
    "/static/%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret.txt",
    "/static/%e2%80%a4%e2%80%a4/secret.txt",
    "/static/%e2%80%a5/secret.txt",
    "/static/.%e2%80%8b./secret.txt",
    "/static/%e2%80%8b../secret.txt",
    "/static/..%e2%80%8b/secret.txt",
    "/static/%e2%80%ae../secret.txt",
    "/static/..%c2%a0/secret.txt",
    "/static/..%ef%bb%bf/secret.txt",
    "/static/%e2%88%95..%e2%88%95secret.txt",
    "/static/..%e2%81%84secret.txt",
    # trailing dots, spaces and other Windows-isms
    "/static/.../secret.txt",
    "/static/..../secret.txt",
    "/static/.. /secret.txt",
    "/static/..%20/secret.txt",
    "/static/..%09/secret.txt",
    "/static/../secret.txt.",
    "/static/..%2e/secret.txt",
    "/static/../secret.txt%20",
    "/static/../secret.txt::$DATA",
    "/static/..::$INDEX_ALLOCATION/secret.txt",
    "/static/../SECRET.TXT",
    "/static/..;/secret.txt",
    "/static/%2e%2e;/secret.txt",
    "/static/;/../secret.txt",
    # query, fragment and case tricks around the location prefix
    "/static/x?/../../secret.txt",
    "/static/%3f/../../secret.txt",
    "/static/%23/../../secret.txt",
    "/static#/../secret.txt",
    "/static%2f..%2fsecret.txt",
    "/static/ok.txt%2f..%2f..%2fsecret.txt",
    "/STATIC/../secret.txt",
    "/static" + "/.." * 40 + "/etc/passwd",
    "/static/" + "a/" * 200 + "../" * 201 + "secret.txt",
    "//static/../secret.txt",
    "/./static/../secret.txt",
    "/x/../static/../secret.txt",
    # symlinks planted inside the root
    "/static/chain",
    "/static/chain_dir/secret.txt",
    "/static/root_link/etc/passwd",
    "/static/dots_link/secret.txt",
    "/static/dangling",
    "/static/sub/rel_out/secret.txt",
    "/static/sub/rel_out",
    # the exact-match alias
    "/favicon.ico/../secret.txt",
    "/favicon.ico%2f..%2fsecret.txt",
    "/favicon.ico/..",
    "/favicon.ico/",
    "/favicon.ico%00",
    "/favicon.ico.",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    top = str(tmp_path_factory.mktemp("hostile-trav"))
    static = os.path.join(top, "static")
    os.makedirs(os.path.join(static, "sub"))
    for name in ("secret.txt", "SECRET.TXT", "secret.txt.", "secret.txt "):
        with open(os.path.join(top, name), "wb") as f:
            f.write(SECRET)
    with open(os.path.join(static, "ok.txt"), "wb") as f:
        f.write(b"inside-ok")
    # A directory really called "..." inside the root: reaching it is fine.
    os.makedirs(os.path.join(static, "..."))
    with open(os.path.join(static, "...", "secret.txt"), "wb") as f:
        f.write(b"inside-dots")
    os.symlink("sub/hop", os.path.join(static, "chain"))               # chain: chain -> sub/hop -> ../../secret
    os.symlink("../../secret.txt", os.path.join(static, "sub", "hop"))
    os.symlink("sub/dirhop", os.path.join(static, "chain_dir"))
    os.symlink("../..", os.path.join(static, "sub", "dirhop"))
    os.symlink("/", os.path.join(static, "root_link"))
    os.symlink("..", os.path.join(static, "dots_link"))
    os.symlink("does-not-exist", os.path.join(static, "dangling"))
    os.symlink("../../secret.txt", os.path.join(static, "sub", "rel_out"))
    up = Upstream(lambda req: ok(b"from-upstream"))
    locations = (f"[location /static/]\nalias = {static}/\n\n"
                 f"[location = /favicon.ico]\nalias = {static}/ok.txt\n")
    proxy = start_proxy(top, [up.addr], locations=locations)
    try:
        yield proxy
    finally:
        proxy.stop()
        up.close()


def fetch(proxy, path):
    return raw_request(proxy.port, b"GET " + path.encode("latin-1") +
                       b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")


def test_controls(site):
    assert fetch(site, "/static/ok.txt").body == b"inside-ok"
    assert fetch(site, "/favicon.ico").body == b"inside-ok"
    assert fetch(site, "/elsewhere").body == b"from-upstream"


@pytest.mark.parametrize("path", ENCODED)
def test_never_a_byte_from_outside(site, path):
    r = fetch(site, path)
    assert r is not None, "no answer at all"
    assert SECRET not in r.body and b"root:" not in r.body, (r.status, r.body[:200])
    if r.status == 200:
        assert r.body in INSIDE, r.body[:200]
    else:
        assert r.status in (400, 403, 404, 414), (r.status, r.body[:200])
    assert site.proc.poll() is None, "the proxy died:\n" + site.log_text()


def test_range_and_head_do_not_leak(site):
    """The same escapes with Range and HEAD: other code paths, same rule."""
    for path in ("/static/chain", "/static/%252e%252e/secret.txt", "/static/..%5csecret.txt"):
        r = raw_request(site.port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: h\r\nRange: bytes=0-5\r\n"
                        b"Connection: close\r\n\r\n")
        assert SECRET[:6] not in r.body and r.status in (400, 403, 404, 416), (path, r.status)
        r = raw_request(site.port, b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                        head_only=True)
        assert r.status in (400, 403, 404) and r.header("content-length") != str(len(SECRET)), (path, r.status)
