"""A Django site with SECURE_PROXY_SSL_HEADER and SECURE_SSL_REDIRECT
behind HAProxy (Debian's) terminating TLS in front of appstack-proxy, the
usual cloud setup: pages load over HTTPS without a redirect loop, because
the proxy keeps the X-Forwarded-Proto of a front server named in
real_ip_from; a client that is not that front server and says
X-Forwarded-Proto: https itself is not believed (it is redirected)."""
import os
import shutil
import signal
import subprocess
import tempfile

import pytest
import requests

from conftest import APPS, EXAMPLES, free_port, wait_for
from proxyutil import Proxy
from supervisorutil import ENV as SUP_ENV, Supervisor

SITE = os.path.join(EXAMPLES, "mysite")
FRONT = "127.0.0.2"     # HAProxy's source address towards appstack-proxy


@pytest.fixture(scope="module")
def stack():
    tmp = tempfile.mkdtemp(prefix="as-tls-", dir="/tmp")
    procs = []
    sup = proxy = None
    try:
        pem = os.path.join(tmp, "site.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-keyout", pem + ".key", "-out", pem + ".crt"], check=True,
                       capture_output=True, timeout=60)
        with open(pem, "w") as out:
            for part in (".crt", ".key"):
                with open(pem + part) as f:
                    out.write(f.read())
        pport, tport = free_port(), free_port()
        env = dict(SUP_ENV, MYSITE_DB=os.path.join(tmp, "db.sqlite3"), MYSITE_STATIC_ROOT=os.path.join(tmp, "s"))
        cfg = os.path.join(tmp, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"""[app]
module = mysite.wsgi:application
chdir = {SITE}
pythonpath = {APPS}
env = DJANGO_SETTINGS_MODULE=tls_django_settings
env = MYSITE_DB={tmp}/db.sqlite3

[supervisor]
listen = unix:{tmp}/app.sock
workers = 1
control = {tmp}/control.sock

[proxy]
workers = 1
listen = 127.0.0.1:{pport}
upstream = unix:{tmp}/app.sock
real_ip_from = {FRONT}
""")
        haproxy_cfg = os.path.join(tmp, "haproxy.cfg")
        with open(haproxy_cfg, "w") as f:
            f.write(f"""global
    log stderr format raw local0 err
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend tls
    bind 127.0.0.1:{tport} ssl crt {pem}
    http-request set-header X-Forwarded-Proto https
    option forwardfor
    default_backend appstack
backend appstack
    server proxy 127.0.0.1:{pport} source {FRONT}
""")
        sup = Supervisor(cfg, None, env=env)
        sup.wait_ready(1, timeout=60)
        proxy = Proxy(cfg, pport)
        procs.append(subprocess.Popen(["haproxy", "-db", "-f", haproxy_cfg], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))

        def up():
            try:
                return requests.get(f"https://localhost:{tport}/", verify=False, timeout=5,
                                    allow_redirects=False).status_code
            except requests.RequestException:
                return None
        wait_for(up, timeout=30, what="HAProxy answering")
        yield f"https://localhost:{tport}", f"http://localhost:{pport}"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        if proxy:
            proxy.stop()
        if sup:
            sup.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_through_haproxy_has_no_redirect_loop(stack):
    https, _ = stack
    s = requests.Session()
    r = s.get(https + "/", verify=False, timeout=10)
    assert r.status_code == 200 and "It works" in r.text and not r.history, [h.headers for h in r.history]
    r = s.get(https + "/admin/login/", verify=False, timeout=10)
    assert r.status_code == 200 and not r.history
    assert r.url.startswith("https://")
    # Secure cookies were set: Django believed the request was HTTPS.
    assert any(c.secure for c in s.cookies), list(s.cookies)


def test_plain_http_is_redirected_and_a_spoofed_proto_not_believed(stack):
    https, plain = stack
    r = requests.get(plain + "/", timeout=10, allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"].startswith("https://")
    # Not a front server: its X-Forwarded-Proto is replaced, Django redirects.
    r = requests.get(plain + "/", timeout=10, allow_redirects=False, headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 301 and r.headers["Location"] == "https://localhost:%s/" % plain.rsplit(":", 1)[1]
