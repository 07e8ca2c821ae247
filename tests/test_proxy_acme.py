"""acme = on, end to end against Let's Encrypt's test server pebble (Debian's
pebble, with its own HTTPS certificate made here, and pebble-challtestsrv
as the DNS that points the names at 127.0.0.1): the proxy runs uacme
itself, answers the HTTP-01 challenges pebble really makes (also with
redirect_https on), installs the certificate with a reload, renews it
before it ends without failing a request, and says a failure in the log
and STATUS= (serving the self-signed placeholder meanwhile) until a HUP
after the cause is fixed. A real client that trusts only pebble's root
verifies the chain, over HTTP/2.

uacme (libcurl) trusts the system's CA bundle only, as in production: the
proxy runs in a mount namespace where that file holds the test CA of
pebble's own HTTPS certificate. That needs root."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import free_port, prog, wait_for
from proxyutil import ENV, Notify, Proxy, Upstream, ok, read_response
from tlsutil import CA

needs_pebble = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("pebble")
    or not os.path.exists("/usr/bin/uacme"),
    reason="needs root (a mount namespace), unshare, pebble and uacme (tests/run installs them)")

BUNDLE = "/etc/ssl/certs/ca-certificates.crt"     # what uacme's libcurl trusts


class Pebble:
    """pebble and pebble-challtestsrv on loopback ports of their own."""

    def __init__(self, directory, http_port, validity):
        self.dir = directory
        os.makedirs(os.path.join(directory, "ca"))
        self.ca = CA(os.path.join(directory, "ca"))
        cert, key = self.ca.issue(["localhost"])
        self.port, self.mgmt, self.dns, self.dns_mgmt = free_port(), free_port(), free_port(), free_port()
        config = os.path.join(directory, "pebble.json")
        with open(config, "w") as f:
            json.dump({"pebble": {
                "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                "certificate": cert, "privateKey": key, "httpPort": http_port, "tlsPort": free_port(),
                "ocspResponderURL": "", "externalAccountBindingRequired": False,
                "certificateValidityPeriod": validity}}, f)
        self.log = open(os.path.join(directory, "pebble.log"), "wb")
        self.dns_proc = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_mgmt}", "-defaultIPv4", "127.0.0.1",
             "-defaultIPv6", ""], stdout=self.log, stderr=subprocess.STDOUT)
        # No random sleeps before validation, no rejected nonces, and every
        # order validated afresh: fast, and each one a real HTTP-01 check.
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        self.proc = subprocess.Popen(["pebble", "-config", config, "-dnsserver", f"127.0.0.1:{self.dns}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.directory = f"https://localhost:{self.port}/dir"
        self.tls = ssl.create_default_context(cafile=self.ca.pem)
        wait_for(self._up, timeout=20, what="pebble")

    def _up(self):
        try:
            with urllib.request.urlopen(self.directory, context=self.tls, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def root(self):
        """The root pebble issues under (a new one each run), as a file."""
        path = os.path.join(self.dir, "pebble-root.pem")
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt}/roots/0", context=self.tls, timeout=5) as r:
            with open(path, "wb") as f:
                f.write(r.read())
        return path

    def dns_record(self, host, address=None):
        """HOST resolves to ADDRESS from now on; None: back to 127.0.0.1."""
        path, body = ("/add-a", {"host": host + ".", "addresses": [address]}) if address else \
                     ("/clear-a", {"host": host + "."})
        req = urllib.request.Request(f"http://127.0.0.1:{self.dns_mgmt}{path}", data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200

    def stop(self):
        for p in (self.proc, self.dns_proc):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()


class AcmeProxy(Proxy):
    """The proxy in a mount namespace whose system CA bundle is pebble's
    test CA, with its state in DIRECTORY/state."""

    def __init__(self, directory, pebble, upstream, domains, http_port, env=None, workers=2):
        self.http_port, self.tls_port = http_port, free_port()
        self.state = os.path.join(directory, "state")
        os.makedirs(self.state)
        cfg = os.path.join(directory, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"[proxy]\nworkers = {workers}\nlisten = 127.0.0.1:{http_port}\n"
                    f"listen = 127.0.0.1:{self.tls_port} ssl\nupstream = {upstream}\nredirect_https = on\n"
                    f"acme = on\nacme_domains = {' '.join(domains)}\nacme_email = admin@appstack.test\n"
                    f"acme_directory = {pebble.directory}\n")
        bundle = os.path.join(directory, "bundle.pem")
        shutil.copyfile(pebble.ca.pem, bundle)
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount --bind {bundle} {BUNDLE} && exec "$@"', "sh"]
        super().__init__(cfg, http_port, env=dict(env or ENV, STATE_DIRECTORY=self.state), wrap=wrap)


def served_cert(port, name):
    """The certificate the TLS listen gives NAME, unverified, as openssl prints it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            pem = ssl.DER_cert_to_PEM_cert(t.getpeercert(binary_form=True))
    return subprocess.run(["openssl", "x509", "-noout", "-subject", "-issuer", "-serial", "-ext", "subjectAltName"],
                          input=pem, capture_output=True, text=True, check=True).stdout


def curl(root, name, port, path="/"):
    """curl trusting only pebble's root, over HTTP/2: status, HTTP version."""
    r = subprocess.run(["curl", "-sS", "--http2", "--cacert", root, "--resolve", f"{name}:{port}:127.0.0.1",
                        "-o", "/dev/null", "-w", "%{http_code} %{http_version}", f"https://{name}:{port}{path}"],
                       capture_output=True, text=True, timeout=20)
    return r.stdout, r.stderr


@needs_pebble
def test_issue_serve_renew_without_failing_a_request(tmpdir_short):
    http_port = free_port()
    # Certificates of 24 s: renewed with a third of their life left, 16 s
    # after issue; the 8 s left cover uacme, pebble and the reload on a
    # loaded machine (a sanitizer build).
    pebble = Pebble(tmpdir_short, http_port, validity=24)
    up = Upstream(lambda req: ok(b"hello from the app"))
    domains = ["www.appstack.test", "appstack.test"]
    proxy = AcmeProxy(tmpdir_short, pebble, up.addr, domains, http_port)
    stop, results = threading.Event(), {"ok": 0, "failed": [], "serials": set()}
    try:
        wait_for(lambda: "acme: new certificate for www.appstack.test" in proxy.log_text(), timeout=30,
                 what="the first certificate")
        wait_for(lambda: "reloaded" in proxy.log_text(), timeout=10, what="the reload that installs it")
        root = pebble.root()
        # A real client trusting pebble's root only: the chain verifies, for each name, over HTTP/2.
        for name in domains:
            assert curl(root, name, proxy.tls_port, "/page") == ("200 2", ""), name
        # Plain HTTP goes to https, but not the challenges (the proxy's own, from its state).
        r = raw(http_port, b"GET /page HTTP/1.1\r\nHost: www.appstack.test\r\n\r\n")
        assert r.status == 301 and r.header("location") == f"https://www.appstack.test:{proxy.tls_port}/page"
        r = raw(http_port, b"GET /.well-known/acme-challenge/nothing HTTP/1.1\r\nHost: www.appstack.test\r\n\r\n")
        assert r.status == 404
        first = served_cert(proxy.tls_port, "www.appstack.test")
        assert "Pebble Intermediate" in first

        ctx = ssl.create_default_context(cafile=root)

        def client():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10) as s:
                        with ctx.wrap_socket(s, server_hostname="www.appstack.test") as t:
                            serial = t.getpeercert()["serialNumber"]
                            f = t.makefile("rb")
                            for _ in range(5):
                                t.sendall(b"GET /load HTTP/1.1\r\nHost: www.appstack.test\r\n\r\n")
                                r = read_response(f)
                                assert r.status == 200 and r.body == b"hello from the app", r
                                results["ok"] += 1
                                results["serials"].add(serial)
                except Exception as e:  # noqa: BLE001 - every failure counts
                    results["failed"].append(repr(e))
        # A connection from before the renewal, kept open across it.
        keep = ctx.wrap_socket(socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10),
                               server_hostname="appstack.test")
        kf = keep.makefile("rb")
        keep.sendall(b"GET /before HTTP/1.1\r\nHost: appstack.test\r\n\r\n")
        assert read_response(kf).status == 200
        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: proxy.log_text().count("acme: new certificate for www.appstack.test") >= 2, timeout=30,
                 what="the renewal")
        wait_for(lambda: served_cert(proxy.tls_port, "www.appstack.test") != first, timeout=10,
                 what="the renewed certificate served")
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(20)
        keep.sendall(b"GET /after HTTP/1.1\r\nHost: appstack.test\r\n\r\n")
        assert read_response(kf).status == 200
        keep.close()
        log = proxy.log_text()
    finally:
        stop.set()
        proxy.stop()
        pebble.stop()
        up.close()
    assert not results["failed"], results["failed"][:5]
    assert results["ok"] > 20 and len(results["serials"]) >= 2, results
    assert "renewing the certificate" in log
    # The state: uacme's account and pair under the state directory; the
    # challenges it answered are gone.
    acme = os.path.join(proxy.state, "acme")
    server = f"localhost_{pebble.port}_dir"
    assert os.path.exists(os.path.join(acme, server, "private", "key.pem"))
    assert os.path.exists(os.path.join(acme, server, "www.appstack.test", "cert.pem"))
    assert os.listdir(os.path.join(acme, "challenges")) == []


def raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return read_response(s.makefile("rb"))


@needs_pebble
def test_failure_is_reported_the_placeholder_serves_and_a_hup_retries(tmpdir_short):
    http_port = free_port()
    pebble = Pebble(tmpdir_short, http_port, validity=3600)
    up = Upstream(lambda req: ok(b"hello"))
    # pebble's DNS sends the validation of this name where nothing listens.
    pebble.dns_record("broken.appstack.test", "127.0.0.2")
    ns = Notify(os.path.join(tmpdir_short, "notify.sock"))
    proxy = AcmeProxy(tmpdir_short, pebble, up.addr, ["broken.appstack.test"], http_port,
                      env=dict(ENV, NOTIFY_SOCKET=ns.path))
    try:
        wait_for(lambda: "acme: no certificate for broken.appstack.test" in proxy.log_text(), timeout=30,
                 what="the failure in the log")
        wait_for(lambda: any("ACME failed at" in l for l in ns.lines()), timeout=10, what="the failure in STATUS=")
        status = [l for l in ns.lines() if "ACME failed at" in l][-1]
        assert status.startswith("STATUS=") and "no certificate yet (self-signed placeholder)" in status, status
        assert "next attempt in 5 minutes" in proxy.log_text()
        # Meanwhile HTTPS works with the self-signed placeholder for the name.
        cert = served_cert(proxy.tls_port, "broken.appstack.test")
        assert "appstack placeholder until ACME" in cert and "DNS:broken.appstack.test" in cert, cert
        # The cause goes away; a HUP (systemctl reload) tries again at once.
        pebble.dns_record("broken.appstack.test")
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "acme: new certificate for broken.appstack.test" in proxy.log_text(), timeout=30,
                 what="the certificate after the fix")
        wait_for(lambda: any(l.startswith("STATUS=") and "certificate valid until" in l and "failed" not in l
                             for l in ns.lines()), timeout=10, what="STATUS= without the failure")
        wait_for(lambda: curl(pebble.root(), "broken.appstack.test", proxy.tls_port)[0] == "200 2", timeout=10,
                 what="the issued certificate served")
    finally:
        proxy.stop()
        ns.close()
        pebble.stop()
        up.close()


def check(tmpdir, text):
    path = os.path.join(tmpdir, "acme.ini")
    with open(path, "w") as f:
        f.write(text)
    return path, subprocess.run([prog("appstack-proxy"), "--check", "-c", path], capture_output=True, text=True,
                                env=ENV, timeout=10)


GOOD = "[proxy]\nlisten = 127.0.0.1:80\nlisten = 127.0.0.1:443 ssl\nupstream = 127.0.0.1:8000\n"

# (name, text after GOOD, line, words)
BAD = [
    ("on without domains", "acme = on\n", 5, "acme = on needs acme_domains"),
    ("a wildcard", "acme = on\nacme_domains = *.example.com\n", 6, "a wildcard needs DNS validation"),
    ("bad email", "acme = on\nacme_domains = example.com\nacme_email = nobody\n", 7, '"nobody" is not an email'),
    ("plain http directory", "acme = on\nacme_domains = example.com\nacme_directory = http://ca/dir\n", 7,
     "is not an https:// URL"),
    ("bad name", "acme = on\nacme_domains = exa_mple..com\n", 6, "is not a host name"),
    ("not on or off", "acme = yes please\nacme_domains = example.com\n", 5, "is not on or off"),
]


@pytest.mark.parametrize("name,text,line,words", BAD, ids=[b[0] for b in BAD])
def test_check_reports_acme_errors_with_file_and_line(tmpdir_short, name, text, line, words):
    path, r = check(tmpdir_short, GOOD + text)
    assert r.returncode == 1, r
    assert f"{path}:{line}: " in r.stderr and words in r.stderr, r.stderr


def test_check_needs_what_acme_uses(tmpdir_short):
    # No ssl listen to serve the certificate on: a warning, like certificates without one.
    path, r = check(tmpdir_short, "[proxy]\nlisten = 127.0.0.1:80\nupstream = 127.0.0.1:8000\n"
                    "acme = on\nacme_domains = example.com\n")
    assert r.returncode == 0 and f'{path}:4: warning: acme = on, but no listen has "ssl"' in r.stderr, r.stderr
    # A name no site answers, without a default site: its challenges would get 421.
    path, r = check(tmpdir_short, "[proxy]\nlisten = 127.0.0.1:80\nlisten = 127.0.0.1:443 ssl\n"
                    "acme = on\nacme_domains = a.example b.example\n\n"
                    "[site a]\nserver_name = a.example\nupstream = 127.0.0.1:8000\n")
    assert r.returncode == 1 and f"{path}:5: acme_domains: b.example is no [site]'s server_name" in r.stderr, \
        r.stderr
    assert "a.example is no" not in r.stderr
    # Options given while acme is off: a warning, not an error.
    path, r = check(tmpdir_short, GOOD.replace("listen = 127.0.0.1:443 ssl\n", "") + "acme_domains = example.com\n")
    assert r.returncode == 0 and f"{path}:4: warning: acme is off" in r.stderr, r.stderr
    # With acme on, no certificate line is needed: the proxy gets one.
    path, r = check(tmpdir_short, GOOD + "acme = on\nacme_domains = example.com www.example.com\n"
                    "acme_email = admin@example.com\n")
    if os.path.exists("/usr/bin/uacme"):
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1 and "Debian package uacme" in r.stderr

