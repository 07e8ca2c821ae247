"""appstack-proxy static aliases against crafted paths: not one byte from
outside the alias root, whatever the spelling or symlink."""
import os

import pytest

from conftest import free_port
from proxyutil import ENV, Proxy, Upstream, ok, proxy_config, raw_request

SECRET = b"TOPSECRET-outside-the-root"

PATHS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/%2e./secret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/sub/../../secret.txt",
    "/static/./../secret.txt",
    "/static//../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/..",
    "/static/..%00/secret.txt",
    "/static/ok.txt%00.png",
    "/static/%00",
    "/static/%2fetc%2fpasswd",
    "/static/..%5csecret.txt",
    "/static/link_file",
    "/static/abs_link",
    "/static/link_dir/secret.txt",
    "/static/sub/up_link/secret.txt",
    "/static/link_dir/static/ok.txt/../../secret.txt",
    "/static/proc_link/environ",
    "http://localhost/static/../secret.txt",
    "/static/ok.txt/../../secret.txt",
    "/static/%zz",
]


# The kernel's openat2 beneath the root, and the component-by-component
# fallback used where openat2 is missing.
@pytest.fixture(scope="module", params=["openat2", "component-walk"])
def site(request, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("trav"))
    static = os.path.join(root, "static")
    os.makedirs(os.path.join(static, "sub"))
    with open(os.path.join(root, "secret.txt"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(static, "ok.txt"), "wb") as f:
        f.write(b"fine")
    os.symlink("../secret.txt", os.path.join(static, "link_file"))
    os.symlink(os.path.join(root, "secret.txt"), os.path.join(static, "abs_link"))
    os.symlink("..", os.path.join(static, "link_dir"))
    os.symlink("../..", os.path.join(static, "sub", "up_link"))
    os.symlink("/proc/self", os.path.join(static, "proc_link"))
    os.symlink("ok.txt", os.path.join(static, "inner_link"))
    # The upstream echoes nothing of the disk: a forwarded path cannot leak.
    up = Upstream(lambda req: ok(b"from-upstream"))
    env = dict(ENV, APPSTACK_TEST_NO_OPENAT2="1") if request.param == "component-walk" else None
    port = free_port()
    proxy = Proxy(proxy_config(root, port, [up.addr], f"[location /static/]\nalias = {static}/\n", ""), port, env=env)
    proxy.mode = request.param
    try:
        yield proxy
    finally:
        proxy.stop()
        up.close()


def fetch(proxy, path):
    return raw_request(proxy.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                       .encode("latin-1"))


def test_control_paths_are_served(site):
    assert fetch(site, "/static/ok.txt").body == b"fine"
    # A symlink that stays inside: followed by openat2; the fallback follows none.
    assert fetch(site, "/static/inner_link").body == (b"fine" if site.mode == "openat2" else b"404 Not Found\n")
    assert fetch(site, "/static/sub/../ok.txt").status == 404   # ".." is refused even when harmless


@pytest.mark.parametrize("path", PATHS)
def test_traversal_never_leaks(site, path):
    r = fetch(site, path)
    assert r is not None
    assert SECRET not in r.body
    assert b"root:" not in r.body
    assert r.status in (400, 403, 404) or r.body == b"from-upstream", (r.status, r.body[:100])
    assert r.status != 200 or r.body == b"from-upstream"
