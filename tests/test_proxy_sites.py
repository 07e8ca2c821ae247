"""Virtual hosts in appstack-proxy ([site NAME]): the Host picks the site
(exact names, wildcards, the default site or 421), each site has its own
upstreams, locations and limits, APPSTACK_SITE is in the access log, a HUP
changes the sites, and every mistake in a [site] is a FILE:LINE error."""
import os
import re
import signal
import socket
import subprocess
import textwrap

import pytest

from conftest import free_port, prog, wait_for
from proxyutil import ENV, Proxy, Upstream, get, ok, raw_request, read_response


def named(name):
    return Upstream(lambda req: ok(f"{name} {req.target}".encode()))


def write(tmpdir, text, name="sites.ini"):
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())
    return path


def start(tmpdir, text):
    port = free_port()
    return Proxy(write(tmpdir, text.replace("PORT", str(port))), port)


def answer(port, host, path="/", **kw):
    headers = {"Host": host} if host is not None else {}
    r = get(port, path, headers, **kw) if host is not None else raw_request(
        port, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    return r.status, r.body.decode(errors="replace")


@pytest.fixture
def ups():
    servers = {n: named(n) for n in ("default", "a", "b", "c")}
    yield servers
    for s in servers.values():
        s.close()


def test_host_picks_the_site(tmpdir_short, ups):
    p = start(tmpdir_short, f"""
        [proxy]
        workers = 1
        listen = 127.0.0.1:PORT
        upstream = {ups['default'].addr}

        [site a]
        server_name = a.example www.a.example
        upstream = {ups['a'].addr}

        [site b]
        server_name = *.b.example
        server_name = 127.0.0.2
        upstream = {ups['b'].addr}

        [site c]
        server_name = *.deep.b.example [::2]
        upstream = {ups['c'].addr}
        """)
    try:
        cases = {
            "a.example": "a", "WWW.A.Example:8080": "a", "a.example.": "a",
            "x.b.example": "b", "x.y.b.example": "b", "127.0.0.2:80": "b",
            "x.deep.b.example": "c", "deep.b.example": "b", "[::2]:8080": "c",
            "b.example": "default",            # a wildcard is for subdomains only
            "other.example": "default", "a.example.org": "default", "localhost": "default",
        }
        for host, site in cases.items():
            assert answer(p.port, host, "/p?q=1") == (200, f"{site} /p?q=1"), host
        # HTTP/1.0 without a Host: the default site.
        assert answer(p.port, None) == (200, "default /")
        # Keep-alive: each request of a connection is routed on its own Host.
        import socket
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n"
                      b"GET /2 HTTP/1.1\r\nHost: z.b.example\r\n\r\n"
                      b"GET /3 HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert re.findall(rb"\r\n\r\n(\w+ /\d)", data) == [b"a /1", b"b /2", b"default /3"]
    finally:
        p.stop()


def many_sites(tmpdir, upstream, swap=False):
    """A [proxy] default site and 30 [site]s, each with its own "= /who"
    file naming it: names of every length around the 8-byte words the
    lookup reads (1 to 17, 63, 180), names that differ in one byte in the
    middle, nested wildcards, an exact name under a wildcard, address
    literals. SWAP: www.site01 and www.site02 trade sites."""
    names = {}
    for length in (1, 2, 7, 8, 9, 15, 16, 17, 63, 180):
        name = f"n{length}x".ljust(length, "q")[:length]
        # labels of at most 50 bytes
        names[f"len{length}"] = ["".join("." if i % 51 == 50 else c for i, c in enumerate(name))]
    for i in range(1, 13):
        names[f"www{i:02d}"] = [f"www.site{i:02d}.example.com"]
    if swap:
        names["www01"], names["www02"] = names["www02"], names["www01"]
    names.update(org=["*.example.org"], deep=["*.deep.example.org"], exact=["example.org", "exact.example.org"],
                 ip4=["127.0.0.5"], ip6=["[::5]"])
    text = f"[proxy]\nworkers = 1\nlisten = 127.0.0.1:PORT\nupstream = {upstream}\n"
    for site in ["default", *names]:
        path = os.path.join(tmpdir, f"who-{site}")
        with open(path, "w") as f:
            f.write(site)
        if site != "default":
            text += f"\n[site {site}]\nserver_name = {' '.join(names[site])}\nupstream = {upstream}\n"
        text += f"\n[location = /who]\nalias = {path}\n"
    return text, names


def test_many_sites_on_one_keep_alive_connection(tmpdir_short, ups):
    """Every Host goes to its site whatever the case, port and trailing dot,
    and whatever the Host of the request before it on the same connection;
    after a HUP the same connection follows the new sites."""
    text, names = many_sites(tmpdir_short, ups["default"].addr)
    p = start(tmpdir_short, text)
    cases = []
    for site, ns in names.items():
        for n in ns:
            if n.startswith("*."):
                n = "a.b" + n[1:]
            cases += [(n, site), (n.upper() + ":8080", site)]
            if not n.startswith("["):   # "[::5]." is not a Host (400)
                cases += [(n + ".", site), (n.title() + ".:1", site)]
    cases += [("x.example.org", "org"), ("deep.example.org", "org"), ("X.DEEP.example.org", "deep"),
              ("exact.example.org", "exact"), ("sub.exact.example.org", "org"),
              ("example.org.", "exact"), ("example.org.evil", "default"), ("www.site13.example.com", "default"),
              ("site01.example.com", "default"), ("www.site1.example.com", "default"), ("[::5]:80", "ip6"),
              ("127.0.0.55", "default"), ("n7xqqq", "default"), ("n7xqqqqq", "default"), ("N8XQQQQQ:1", "len8"),
              ("n9xqqqqqr", "default"), ("n16xqqqqqqqqqqqr", "default"), ("", "default")]
    # 255 bytes once the trailing dot is gone is still a name; 256 is not.
    longest = ("y" * 60 + ".") * 3 + "z" * (255 - 183 - len(".example.org")) + ".example.org"
    assert len(longest) == 255
    cases += [(longest + ".:80", "org"), ("z" + longest, "default")]
    cases += cases[::3]          # the same Host again, after others

    def who(s, f, host):
        s.sendall(f"GET /who HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        r = read_response(f, False)
        assert r and r.status == 200, (host, r and r.status)
        return r.body.decode()

    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s, s.makefile("rb") as f:
            got = [(host, who(s, f, host)) for host, _ in cases]
            assert got == cases
            # HUP: www.site01 and www.site02 trade sites; this connection
            # stays open and asks again with the Host it asked last.
            assert who(s, f, "www.site01.example.com") == "www01"
            write(tmpdir_short, many_sites(tmpdir_short, ups["default"].addr, swap=True)[0]
                  .replace("PORT", str(p.port)))
            p.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: answer(p.port, "www.site01.example.com", "/who") == (200, "www02"), timeout=5,
                     what="reloaded sites")
            assert who(s, f, "www.site01.example.com") == "www02"
            assert who(s, f, "WWW.SITE02.example.com") == "www01"
    finally:
        p.stop()


def test_absolute_form_target_is_routed_by_its_authority(tmpdir_short, ups):
    os.makedirs(os.path.join(tmpdir_short, "asite"))
    with open(os.path.join(tmpdir_short, "asite", "f.txt"), "w") as f:
        f.write("a file")
    p = start(tmpdir_short, f"""
        [proxy]
        workers = 1
        listen = 127.0.0.1:PORT
        upstream = {ups['default'].addr}

        [site a]
        server_name = a.example
        upstream = {ups['a'].addr}

        [location /static/]
        alias = {tmpdir_short}/asite/
        """)
    try:
        # RFC 9112 3.2.2: the target's authority is the Host, whatever Host says.
        for host in ("elsewhere.example", "a.example"):
            r = raw_request(p.port, f"GET http://A.example:8080/static/f.txt HTTP/1.1\r\nHost: {host}\r\n"
                            "Connection: close\r\n\r\n".encode())
            assert (r.status, r.body) == (200, b"a file"), host
        r = raw_request(p.port, b"GET http://a.example/app?x=1 HTTP/1.1\r\nHost: b.example\r\n"
                        b"Connection: close\r\n\r\n")
        assert r.status == 200 and r.body.startswith(b"a ")
        r = raw_request(p.port, b"GET http://other.example/static/f.txt HTTP/1.1\r\nHost: a.example\r\n"
                        b"Connection: close\r\n\r\n")
        assert r.status == 200 and r.body.startswith(b"default ")
    finally:
        p.stop()


def test_without_a_default_site_an_unknown_host_is_421(tmpdir_short, ups):
    p = start(tmpdir_short, f"""
        [proxy]
        workers = 1
        listen = 127.0.0.1:PORT

        [site a]
        server_name = a.example
        upstream = {ups['a'].addr}
        """)
    try:
        assert answer(p.port, "a.example") == (200, "a /")
        status, _ = answer(p.port, "b.example")
        assert status == 421
        assert answer(p.port, None)[0] == 421
        assert not ups["a"].requests[1:], "an unknown Host reached an upstream"
    finally:
        p.stop()


def test_locations_and_limits_belong_to_their_site(tmpdir_short, ups):
    for d in ("dflt", "asite"):
        os.makedirs(os.path.join(tmpdir_short, d))
        with open(os.path.join(tmpdir_short, d, "f.txt"), "w") as f:
            f.write(d)
    p = start(tmpdir_short, f"""
        [proxy]
        workers = 1
        listen = 127.0.0.1:PORT
        upstream = {ups['default'].addr}
        client_max_body_size = 1k

        [location /static/]
        alias = {tmpdir_short}/dflt/

        [site a]
        server_name = a.example
        upstream = {ups['a'].addr}
        client_max_body_size = 4k

        [location /static/]
        alias = {tmpdir_short}/asite/

        [location = /only-a.txt]
        alias = {tmpdir_short}/asite/f.txt

        [site b]
        server_name = b.example
        upstream = {ups['b'].addr}
        """)
    try:
        assert answer(p.port, "localhost", "/static/f.txt") == (200, "dflt")
        assert answer(p.port, "a.example", "/static/f.txt") == (200, "asite")
        assert answer(p.port, "a.example", "/only-a.txt") == (200, "asite")
        assert answer(p.port, "localhost", "/only-a.txt") == (200, "default /only-a.txt")
        # Site b has no locations: everything goes to its upstream.
        assert answer(p.port, "b.example", "/static/f.txt") == (200, "b /static/f.txt")
        body = b"x" * 2048
        assert answer(p.port, "a.example", "/up", method="POST", body=body) == (200, "a /up")
        assert answer(p.port, "localhost", "/up", method="POST", body=body)[0] == 413
        # b does not set it: [proxy]'s 1k.
        assert answer(p.port, "b.example", "/up", method="POST", body=body)[0] == 413
        assert answer(p.port, "a.example", "/up", method="POST", body=b"x" * 5000)[0] == 413
        # Chunked bodies are held to the site's limit as they arrive.
        chunked = (b"POST /c HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   b"800\r\n" + body + b"\r\n0\r\n\r\n")
        assert raw_request(p.port, chunked % b"a.example").status == 200
        assert raw_request(p.port, chunked % b"localhost").status == 413
    finally:
        p.stop()


def test_access_log_names_the_site_and_hup_changes_sites(tmpdir_short, ups):
    text = f"""
        [proxy]
        workers = 1
        listen = 127.0.0.1:PORT
        upstream = {ups['default'].addr}

        [site a]
        server_name = a.example
        upstream = {ups['a'].addr}
        access_log = off

        [site b]
        server_name = b.example
        upstream = {ups['b'].addr}
        """
    p = start(tmpdir_short, text)
    try:
        answer(p.port, "b.example", "/logged-b")
        answer(p.port, "a.example", "/not-logged-a")
        answer(p.port, "zzz", "/logged-default")
        wait_for(lambda: "/logged-default" in p.log_text(), timeout=5, what="access log")
        lines = p.log_text().splitlines()
        assert next(l for l in lines if "/logged-b" in l).endswith(f"{ups['b'].addr} b")
        assert next(l for l in lines if "/logged-default" in l).endswith(f"{ups['default'].addr} default")
        assert not any("/not-logged-a" in l for l in lines)
        # HUP: a.example moves to site c, b is gone (its name falls to the default site).
        write(tmpdir_short, text.replace("PORT", str(p.port)).replace(f"[site b]\n        server_name = b.example\n"
                                                                       f"        upstream = {ups['b'].addr}\n", "")
              .replace("a.example", "c.example") + f"""
        [site c2]
        server_name = a.example
        upstream = {ups['c'].addr}
        """)
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: answer(p.port, "a.example")[1] == "c /", timeout=5, what="reloaded sites")
        assert answer(p.port, "b.example") == (200, "default /")
        assert answer(p.port, "c.example") == (200, "a /")
    finally:
        p.stop()


def test_no_sites_logs_as_before(tmpdir_short, ups):
    p = start(tmpdir_short, f"""
        [proxy]
        workers = 1
        listen = 127.0.0.1:PORT
        upstream = {ups['default'].addr}
        """)
    try:
        assert answer(p.port, "anything.example") == (200, "default /")
        wait_for(lambda: '"GET / HTTP/1.1" 200' in p.log_text(), timeout=5, what="access log")
        line = next(l for l in p.log_text().splitlines() if '"GET / HTTP/1.1"' in l)
        assert line.endswith(ups["default"].addr)
    finally:
        p.stop()


GOOD = """\
[proxy]
listen = 127.0.0.1:1
upstream = unix:/tmp/nowhere.sock

[site a]
server_name = a.example
upstream = unix:/tmp/a.sock
"""

# (name, config text, line of the error, words the message must contain)
BAD = [
    ("site without a name", GOOD + "[site]\n", 8, "site name must be"),
    ("site name with a slash", GOOD + "[site a/b]\n", 8, "site name must be"),
    ("site named default", GOOD + "[site default]\n", 8, '"default" is the name of the default site'),
    ("duplicate site", GOOD + "\n[site a]\nserver_name = x.example\nupstream = unix:/tmp/x.sock\n", 9,
     'duplicate site "a" (first at line 5)'),
    ("unknown key in a site", GOOD + "workers = 3\n", 8, 'unknown key "workers" in [site a]'),
    ("bad server_name", GOOD + "server_name = b.example bad/name\n", 8, '"bad/name" is not a host name'),
    ("server_name with a port", GOOD + "server_name = b.example:80\n", 8, "is not a host name"),
    ("wildcard in the middle", GOOD + "server_name = a.*.example\n", 8, "is not a host name"),
    ("server_name in two sites",
     GOOD + "\n[site b]\nserver_name = x.example A.example\nupstream = unix:/tmp/b.sock\n", 10,
     "server_name a.example is [site a]'s already (line 6)"),
    ("site without server_name", GOOD + "\n[site b]\nupstream = unix:/tmp/b.sock\n", 9,
     "[site b] has no server_name"),
    ("site without upstream", GOOD + "\n[site b]\nserver_name = b.example\n", 9,
     '[site b] needs at least one "upstream"'),
    ("bad upstream in a site", GOOD + "upstream = 300.0.0.1:80\n", 8, "not an IP address"),
    ("bad size in a site", GOOD + "client_max_body_size = big\n", 8, "client_max_body_size"),
    ("bad timeout in a site", GOOD + "proxy_read_timeout = soon\n", 8, "proxy_read_timeout"),
    ("bad on/off in a site", GOOD + "access_log = maybe\n", 8, "access_log"),
    ("location without alias in a site", GOOD + "\n[location /s/]\nexpires = 1d\n", 9, "has no alias"),
    ("duplicate location in a site", GOOD + "\n[location /s/]\nalias = /tmp/\n\n[location /s/]\nalias = /tmp/\n",
     12, 'duplicate location "/s/"'),
    ("default locations without default upstream",
     GOOD.replace("upstream = unix:/tmp/nowhere.sock\n", "\n[location /s/]\nalias = /tmp/\n"), 4,
     "is the default site's, which needs an \"upstream\" in [proxy]"),
    ("site upstream is the proxy's listen", GOOD + "upstream = 127.0.0.1:1\n", 8,
     "is the proxy's own listen address"),
]


@pytest.mark.parametrize("name,text,line,words", BAD, ids=[b[0] for b in BAD])
def test_bad_site_config_check(tmpdir_short, name, text, line, words):
    path = write(tmpdir_short, text, "bad.ini")
    r = subprocess.run([prog("appstack-proxy"), "--check", "-c", path], capture_output=True, text=True,
                       env=ENV, timeout=10)
    assert r.returncode == 1, r
    assert f"{path}:{line}: " in r.stderr and words in r.stderr, r.stderr
    for out in r.stderr.splitlines():
        assert out.startswith(f"{path}:"), r.stderr


def test_good_site_config_check(tmpdir_short):
    path = write(tmpdir_short, GOOD + "\n[location /s/]\nalias = /tmp/\n", "good.ini")
    r = subprocess.run([prog("appstack-proxy"), "--check", "-c", path], capture_output=True, text=True,
                       env=ENV, timeout=10)
    assert r.returncode == 0 and r.stderr == "", r.stderr
