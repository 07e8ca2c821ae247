"""appstack-proxy's TLS listens with real clients (curl, openssl s_client,
Python's ssl): certificates chosen by SNI and by the client's key types,
protocols and ciphers, resumption, redirect_https, HSTS, X-Forwarded-Proto,
bad pairs at --check, start and HUP, and certificates replaced under load."""
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import free_port, prog, wait_for
import proxyutil
from proxyutil import ENV, Proxy, Upstream, ok, read_response
from tlsutil import CA


@pytest.fixture(scope="module")
def pki():
    """A CA and its leaf certificates: localhost (ECDSA and RSA), b.test,
    *.wild.test, and a second localhost ECDSA pair for reloads."""
    with tempfile.TemporaryDirectory(prefix="as-tls-", dir="/tmp") as d:
        ca = CA(d)
        ca.localhost_ec = ca.issue(["localhost"], "ec")
        ca.localhost_rsa = ca.issue(["localhost"], "rsa")
        ca.b = ca.issue(["b.test"], "ec")
        ca.wild = ca.issue(["*.wild.test"], "ec")
        ca.localhost_ec2 = ca.issue(["localhost"], "ec", stem="localhost-ec-second")
        yield ca


def pairs(*p):
    return "".join(f"certificate = {c}\ncertificate_key = {k}\n" for c, k in p)


class TlsProxy(Proxy):
    def __init__(self, directory, upstream, tls_pairs, extra="", locations="", plain=False, workers=None):
        workers = workers or proxyutil.WORKERS
        self.tls_port = free_port()
        self.plain_port = free_port() if plain else None
        listens = f"listen = 127.0.0.1:{self.tls_port} ssl\n"
        if plain:
            listens += f"listen = 127.0.0.1:{self.plain_port}\n"
        self.config_text = (f"[proxy]\n{listens}upstream = {upstream}\n{tls_pairs}{extra}\n{locations}"
                            f"\n[proxy]\nworkers = {workers}\n")     # last: the lines above keep their numbers
        cfg = os.path.join(directory, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(self.config_text)
        super().__init__(cfg, self.tls_port)

    def rewrite(self, text):
        with open(self.config, "w") as f:
            f.write(text)


def https(port, ca, path="/", host="localhost", method="GET", body=None, headers=None, ctx=None):
    ctx = ctx or ca.client_context()
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    c.request(method, path, body=body, headers={"Host": host, **(headers or {})})
    r = c.getresponse()
    r.data = r.read()
    r.cert = c.sock.getpeercert()
    r.cipher = c.sock.cipher()
    c.close()
    return r


def serial_of(pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", pem], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().split("=")[1].lstrip("0")


def peer_serial(port, ca, host="localhost", ctx=None):
    ctx = ctx or ca.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            return t.getpeercert()["serialNumber"].lstrip("0")


def test_curl_static_and_forwarded_with_forwarded_proto_and_hsts(tmpdir_short, pki, proxy_workers):
    up = Upstream(lambda req: ok(b"app " + req.target.encode()))
    static = os.path.join(tmpdir_short, "static")
    os.makedirs(static)
    data = os.urandom(300_000)
    with open(os.path.join(static, "big.bin"), "wb") as f:
        f.write(data)
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec), extra="hsts = 365d\n",
                     locations=f"[location /static/]\nalias = {static}/\n", plain=True)
    try:
        def curl(url, *args):
            r = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", pki.pem, "-D", "-", "-o", "-", *args, url],
                               capture_output=True, timeout=20)
            assert r.returncode == 0, r.stderr
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            return head.decode(), body

        head, body = curl(f"https://localhost:{proxy.tls_port}/static/big.bin")
        assert head.startswith("HTTP/1.1 200") and body == data
        assert "Strict-Transport-Security: max-age=31536000" in head
        head, body = curl(f"https://localhost:{proxy.tls_port}/page?q=1")
        assert body == b"app /page?q=1" and "Strict-Transport-Security" in head
        assert up.requests[-1].header("X-Forwarded-Proto") == ["https"]
        # The plain listen of the same proxy: http, and no HSTS.
        head, body = curl(f"http://127.0.0.1:{proxy.plain_port}/page")
        assert body == b"app /page" and "Strict-Transport-Security" not in head
        assert up.requests[-1].header("X-Forwarded-Proto") == ["http"]
        # A client's own X-Forwarded-Proto never reaches the app.
        curl(f"http://127.0.0.1:{proxy.plain_port}/page", "-H", "X-Forwarded-Proto: https")
        assert up.requests[-1].header("X-Forwarded-Proto") == ["http"]
    finally:
        proxy.stop()
        up.close()


def test_a_file_of_several_records_leaves_in_full_sized_segments(tmpdir_short, pki):
    """100 KiB is seven 16 KiB records, one write each; corked, the kernel
    sends them in full-sized segments (64 KiB on loopback), not one each."""
    static = os.path.join(tmpdir_short, "static")
    os.makedirs(static)
    data = os.urandom(100 * 1024)
    with open(os.path.join(static, "f.bin"), "wb") as f:
        f.write(data)
    up = Upstream()
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec),
                     locations=f"[location /static/]\nalias = {static}/\n")
    n = 20
    try:
        with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
            with pki.client_context().wrap_socket(s, server_hostname="localhost") as t:
                f = t.makefile("rb")
                for _ in range(n):
                    t.sendall(b"GET /static/f.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    r = read_response(f)
                    assert r.status == 200 and r.body == data
                port = t.getsockname()[1]
                out = subprocess.run(["ss", "-tin", "state", "established",
                                      f"( sport = :{proxy.tls_port} and dport = :{port} )"],
                                     capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"segs_out:(\d+)", out)
        assert m, out
        assert int(m.group(1)) / n < 5, out      # uncorked: 7 and more per response
    finally:
        proxy.stop()
        up.close()


def test_hsts_from_config_replaces_the_apps(tmpdir_short, pki):
    up = Upstream(lambda req: ok(b"x", extra="Strict-Transport-Security: max-age=5\r\n"))
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec), extra="hsts = 1d\n")
    try:
        r = https(proxy.tls_port, pki, "/")
        assert r.headers.get_all("Strict-Transport-Security") == ["max-age=86400"]
    finally:
        proxy.stop()
        up.close()


def test_openssl_s_client_protocols_alpn_and_resumption(tmpdir_short, pki, proxy_workers):
    up = Upstream()
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec))

    def run(*args, stdin=b""):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{proxy.tls_port}",
                            "-servername", "localhost", "-CAfile", pki.pem, *args],
                           input=stdin, capture_output=True, timeout=20)
        return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")

    try:
        assert "ALPN protocol: h2" in run("-alpn", "h2,http/1.1")
        out = run("-alpn", "http/1.1", "-ign_eof", stdin=b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert "Protocol  : TLSv1.3" in out and "Verify return code: 0 (ok)" in out
        assert "ALPN protocol: http/1.1" in out
        assert "HTTP/1.1 200 OK" in out and "GET /x" in out
        out = run("-tls1_2")
        assert "Protocol  : TLSv1.2" in out and "Verify return code: 0 (ok)" in out
        for old in ("-tls1_1", "-tls1"):
            out = run(old, "-cipher", "DEFAULT@SECLEVEL=0")
            assert "Cipher is (NONE)" in out or "alert protocol version" in out or "no protocols available" in out
        # A TLS 1.3 ticket comes after the handshake: s_client must stay
        # until the answer (the server's close) to have it.
        sess = os.path.join(tmpdir_short, "sess.pem")
        req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        assert "New, TLSv1.3" in run("-sess_out", sess, "-ign_eof", stdin=req)
        # A resumed TLS 1.3 session brings a fresh ticket (clients use one
        # once), so the connection after it resumes too.
        again = os.path.join(tmpdir_short, "sess-again.pem")
        assert "Reused, TLSv1.3" in run("-sess_in", sess, "-sess_out", again, "-ign_eof", stdin=req)
        assert "Reused, TLSv1.3" in run("-sess_in", again, "-ign_eof", stdin=req)
        assert "New, TLSv1.2" in run("-tls1_2", "-sess_out", sess, "-ign_eof", stdin=req)
        assert "Reused, TLSv1.2" in run("-tls1_2", "-sess_in", sess, "-ign_eof", stdin=req)
    finally:
        proxy.stop()
        up.close()


def test_python_ssl_sni_key_types_and_default(tmpdir_short, pki):
    up = Upstream()
    proxy = TlsProxy(tmpdir_short, up.addr,
                     pairs(pki.localhost_ec, pki.localhost_rsa, pki.b, pki.wild))
    try:
        ec, rsa = serial_of(pki.localhost_ec[0]), serial_of(pki.localhost_rsa[0])
        assert peer_serial(proxy.tls_port, pki, "localhost") == ec
        assert peer_serial(proxy.tls_port, pki, "b.test") == serial_of(pki.b[0])
        assert peer_serial(proxy.tls_port, pki, "x.wild.test") == serial_of(pki.wild[0])
        # A client that takes only RSA gets the RSA certificate of the same name.
        ctx = pki.client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        assert peer_serial(proxy.tls_port, pki, "localhost", ctx) == rsa
        # An unknown name (or none) gets the first certificate: the client
        # that checks the name refuses it, one that does not is served.
        with pytest.raises(ssl.SSLCertVerificationError):
            peer_serial(proxy.tls_port, pki, "unknown.test")
        loose = pki.client_context()
        loose.check_hostname = False
        assert peer_serial(proxy.tls_port, pki, "unknown.test", loose) == ec
        with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
            with loose.wrap_socket(s) as t:       # no SNI at all
                assert t.getpeercert()["serialNumber"].lstrip("0") == ec
        # Resumption with Python's session object.
        ctx = pki.client_context()
        with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                read_response(t.makefile("rb"))
                session = t.session
        with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="localhost", session=session) as t:
                assert t.session_reused
    finally:
        proxy.stop()
        up.close()


def test_protocols_and_ciphers_are_settable(tmpdir_short, pki):
    up = Upstream()
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec), extra="tls_protocols = TLSv1.3\n")
    try:
        ctx = pki.client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            peer_serial(proxy.tls_port, pki, ctx=ctx)
        assert https(proxy.tls_port, pki).status == 200
    finally:
        proxy.stop()
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec),
                     extra="tls_protocols = TLSv1.2\ntls_ciphers = ECDHE-ECDSA-AES256-GCM-SHA384\n")
    try:
        r = https(proxy.tls_port, pki)
        assert r.status == 200 and r.cipher[:2] == ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2")
    finally:
        proxy.stop()
        up.close()


def test_redirect_https(tmpdir_short, pki):
    up = Upstream(lambda req: ok(b"app " + req.target.encode()))
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec), extra="redirect_https = on\n", plain=True)
    try:
        def plain(raw):
            with socket.create_connection(("127.0.0.1", proxy.plain_port), timeout=10) as s:
                s.sendall(raw)
                return read_response(s.makefile("rb"), head_only=raw.startswith(b"HEAD"))
        r = plain(b"GET /a/b?c=d HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        assert r.status == 301 and r.header("location") == f"https://localhost:{proxy.tls_port}/a/b?c=d"
        r = plain(b"HEAD / HTTP/1.1\r\nHost: [::1]\r\n\r\n")
        assert r.status == 301 and r.header("location") == f"https://[::1]:{proxy.tls_port}/"
        r = plain(b"POST /form HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        assert r.status == 301 and r.header("location") == f"https://127.0.0.1:{proxy.tls_port}/form"
        # ACME's HTTP-01 challenges stay on plain HTTP.
        r = plain(b"GET /.well-known/acme-challenge/token HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert r.status == 200 and r.body == b"app /.well-known/acme-challenge/token"
        # The TLS listen itself serves.
        assert https(proxy.tls_port, pki, "/z").data == b"app /z"
    finally:
        proxy.stop()
        up.close()


def check(cfg):
    return subprocess.run([prog("appstack-proxy"), "--check", "-c", cfg], capture_output=True, text=True,
                          env=ENV, timeout=30)


def test_bad_pairs_are_file_line_errors_at_check_and_start(tmpdir_short, pki):
    port = free_port()
    cert, key = pki.localhost_ec
    notpem = os.path.join(tmpdir_short, "notpem.pem")
    with open(notpem, "w") as f:
        f.write("not a certificate\n")
    head = f"[proxy]\nlisten = 127.0.0.1:{port} ssl\nupstream = 127.0.0.1:1\n"
    cases = [
        (f"certificate = {tmpdir_short}/missing.pem\ncertificate_key = {key}\n", 4,
         "certificate " + f"{tmpdir_short}/missing.pem: No such file or directory"),
        (f"certificate = {cert}\ncertificate_key = {pki.localhost_rsa[1]}\n", 5,
         "not the key of the certificate before it"),
        (f"certificate = {cert}\ncertificate_key = {pki.b[1]}\n", 5, "not the key of the certificate before it"),
        (f"certificate = {cert}\n", 4, "certificate without a certificate_key line after it"),
        (f"certificate_key = {key}\n", 4, "certificate_key without a certificate line before it"),
        ("", 2, "ssl needs a certificate and certificate_key"),
        (f"certificate = {notpem}\ncertificate_key = {key}\n", 4, "no PEM certificate in it"),
        (f"certificate = {cert}\ncertificate_key = {tmpdir_short}/nokey.key\n", 5, "No such file or directory"),
        (pairs(pki.localhost_ec, pki.localhost_ec2), 6, "another certificate with the same names and key type"),
        (pairs(pki.localhost_ec) + "tls_protocols = TLSv1.1\n", 6, "older protocols are insecure"),
        (pairs(pki.localhost_ec) + "tls_ciphers = NOTHING-REAL\n", 6, "tls_ciphers: no usable cipher"),
    ]
    for i, (text, line, words) in enumerate(cases):
        cfg = os.path.join(tmpdir_short, f"bad{i}.ini")
        with open(cfg, "w") as f:
            f.write(head + text)
        r = check(cfg)
        assert r.returncode == 1, (text, r.stderr)
        assert re.search(re.escape(f"{cfg}:{line}: ") + ".*" + re.escape(words), r.stderr), (text, r.stderr)
        r = subprocess.run([prog("appstack-proxy"), "-c", cfg], capture_output=True, text=True, env=ENV,
                           timeout=10)
        assert r.returncode == 1 and f"{cfg}:{line}: " in r.stderr, (text, r.stderr)
    # --check lists every bad pair, not only the first.
    cfg = os.path.join(tmpdir_short, "two.ini")
    with open(cfg, "w") as f:
        f.write(head + f"certificate = {cert}\ncertificate_key = {pki.b[1]}\n"
                f"certificate = {pki.b[0]}\ncertificate_key = {key}\n")
    r = check(cfg)
    assert r.returncode == 1 and f"{cfg}:5:" in r.stderr and f"{cfg}:7:" in r.stderr, r.stderr
    # Pairs without any TLS listen are not used: a warning only.
    cfg = os.path.join(tmpdir_short, "unused.ini")
    with open(cfg, "w") as f:
        f.write(f"[proxy]\nlisten = 127.0.0.1:{port}\nupstream = 127.0.0.1:1\n" + pairs(pki.localhost_ec))
    r = check(cfg)
    assert r.returncode == 0 and f"{cfg}:4: warning: no listen has \"ssl\"" in r.stderr, r.stderr


def replace_pair(dst, src):
    """Replaces DST's files with SRC's the way a deploy does: write aside, rename."""
    for d, s in zip(dst, src):
        shutil.copyfile(s, d + ".new")
        os.rename(d + ".new", d)


def test_hup_rereads_certificates_keeps_connections_and_survives_a_bad_pair(tmpdir_short, pki, proxy_workers):
    up = Upstream()
    live = (os.path.join(tmpdir_short, "live.pem"), os.path.join(tmpdir_short, "live.key"))
    replace_pair(live, pki.localhost_ec)
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(live))
    first, second = serial_of(pki.localhost_ec[0]), serial_of(pki.localhost_ec2[0])
    try:
        assert peer_serial(proxy.tls_port, pki) == first
        ctx = pki.client_context()
        keep = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10),
                               server_hostname="localhost")
        kf = keep.makefile("rb")
        keep.sendall(b"GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(kf).status == 200
        replace_pair(live, pki.localhost_ec2)
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: peer_serial(proxy.tls_port, pki) == second, timeout=5, what="the new certificate")
        keep.sendall(b"GET /2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(kf).status == 200       # the connection from before the reload
        # A mismatched pair at reload: logged, and the running one keeps serving.
        shutil.copyfile(pki.b[1], live[1])
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "not the key of the certificate before it" in proxy.log_text(), timeout=5,
                 what="the reload error")
        assert f"{proxy.config}:5: certificate_key {live[1]}" in proxy.log_text()
        # The verdict is the next line, written after the error's.
        wait_for(lambda: "keeping the running configuration" in proxy.log_text(), timeout=5, what="the verdict")
        assert peer_serial(proxy.tls_port, pki) == second
        keep.sendall(b"GET /3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(kf).status == 200
        keep.close()
    finally:
        proxy.stop()
        up.close()


def test_certificate_replaced_ten_times_under_load_fails_no_request(tmpdir_short, pki, proxy_workers):
    up = Upstream(lambda req: ok(b"fine"))
    live = (os.path.join(tmpdir_short, "live.pem"), os.path.join(tmpdir_short, "live.key"))
    replace_pair(live, pki.localhost_ec)
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(live))
    stop = threading.Event()
    results = {"ok": 0, "failed": [], "serials": set()}
    lock = threading.Lock()

    def client(fresh_every):
        ctx = pki.client_context()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
                    with ctx.wrap_socket(s, server_hostname="localhost") as t:
                        serial = t.getpeercert()["serialNumber"].lstrip("0")
                        f = t.makefile("rb")
                        for _ in range(fresh_every):
                            t.sendall(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
                            r = read_response(f)
                            assert r.status == 200 and r.body == b"fine", r
                            with lock:
                                results["ok"] += 1
                                results["serials"].add(serial)
            except Exception as e:      # noqa: BLE001 - every failure counts
                with lock:
                    results["failed"].append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in (1, 1, 5, 20)]
    try:
        for t in threads:
            t.start()
        for i in range(10):
            time.sleep(0.3)
            replace_pair(live, pki.localhost_ec2 if i % 2 == 0 else pki.localhost_ec)
            proxy.proc.send_signal(signal.SIGHUP)
            # One reload per pair: a HUP sent while the last one is still
            # being handled would be folded into it.
            wait_for(lambda: proxy.log_text().count("reloaded") == i + 1, what="reload %d" % (i + 1))
        time.sleep(0.3)
        log = proxy.log_text()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        proxy.stop()
        up.close()
    assert not results["failed"], results["failed"][:5]
    assert results["ok"] > 50
    assert results["serials"] == {serial_of(pki.localhost_ec[0]), serial_of(pki.localhost_ec2[0])}
    assert log.count("reloaded") == 10, log


def test_large_bodies_pipelining_and_garbage_over_tls(tmpdir_short, pki):
    up = Upstream(lambda req: ok(hashlib.sha256(req.body).hexdigest().encode() + b" " + req.target.encode()))
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(pki.localhost_ec), extra="client_max_body_size = 20m\n")
    try:
        body = os.urandom(3 << 20)
        r = https(proxy.tls_port, pki, "/up", method="POST", body=body)
        assert r.status == 200 and r.data == hashlib.sha256(body).hexdigest().encode() + b" /up"
        # Three requests in one record: answered in order on one connection.
        ctx = pki.client_context()
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10),
                             server_hostname="localhost") as t:
            t.sendall(b"".join(f"GET /p{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for i in range(3)))
            f = t.makefile("rb")
            for i in range(3):
                assert read_response(f).body.endswith(f" /p{i}".encode())
        # Plain HTTP and garbage on the TLS port: closed, the proxy serves on.
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(3000)):
            with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
                s.sendall(junk)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
        assert https(proxy.tls_port, pki, "/after").status == 200
    finally:
        proxy.stop()
        up.close()


def test_site_certificates_join_the_set(tmpdir_short, pki):
    a = Upstream(lambda req: ok(b"default"))
    b = Upstream(lambda req: ok(b"site b"))
    site = f"[site b]\nserver_name = b.test\nupstream = {b.addr}\n" + pairs(pki.b)
    proxy = TlsProxy(tmpdir_short, a.addr, pairs(pki.localhost_ec), locations=site)
    try:
        r = https(proxy.tls_port, pki, "/", host="b.test")
        assert r.data == b"site b" and r.cert["serialNumber"].lstrip("0") == serial_of(pki.b[0])
        r = https(proxy.tls_port, pki, "/", host="localhost")
        assert r.data == b"default" and r.cert["serialNumber"].lstrip("0") == serial_of(pki.localhost_ec[0])
    finally:
        proxy.stop()
        a.close()
        b.close()
