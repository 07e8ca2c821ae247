"""The Django example site over HTTPS through appstack-proxy, as a person
and a browser see it: Django knows the request is secure (the example sets
SECURE_PROXY_SSL_HEADER), the CSRF form works with the Origin a browser
sends, plain HTTP redirects, and headless Chromium, trusting the test CA,
renders the page with its stylesheet applied, over HTTP/2."""
import os
import re
import subprocess
import tempfile

import pytest
import requests

from browserutil import CHROMIUM, Browser
from conftest import APPS, EXAMPLES, free_port
from proxyutil import Proxy
from supervisorutil import ENV as SUP_ENV, Supervisor
from tlsutil import CA

SITE = os.path.join(EXAMPLES, "mysite")


@pytest.fixture(scope="module")
def stack():
    with tempfile.TemporaryDirectory(prefix="as-", dir="/tmp") as tmp:
        static_root = os.path.join(tmp, "static_root")
        env = dict(SUP_ENV, MYSITE_STATIC_ROOT=static_root, MYSITE_DB=os.path.join(tmp, "db.sqlite3"))
        subprocess.run(["/usr/bin/python3", os.path.join(SITE, "manage.py"), "collectstatic", "--noinput", "-v0"],
                       check=True, env=env, timeout=120)
        ca = CA(tmp)
        cert, key = ca.issue(["localhost"], "ec")
        tls_port, plain_port = free_port(), free_port()
        cfg = os.path.join(tmp, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"""[app]
module = mysite.wsgi:application
chdir = {SITE}
pythonpath = {APPS}
env = DJANGO_SETTINGS_MODULE=proxy_django_settings
env = MYSITE_STATIC_ROOT={static_root}
env = MYSITE_DB={tmp}/db.sqlite3

[supervisor]
listen = unix:{tmp}/app.sock
workers = 2
control = {tmp}/control.sock

[proxy]
workers = 1
listen = 127.0.0.1:{tls_port} ssl
listen = 127.0.0.1:{plain_port}
upstream = unix:{tmp}/app.sock
certificate = {cert}
certificate_key = {key}
redirect_https = on
hsts = 1h

[location /static/]
alias = {static_root}/
expires = 30d
""")
        sup = Supervisor(cfg, None, env=env)
        proxy = None
        try:
            sup.wait_ready(2, timeout=60)
            proxy = Proxy(cfg, tls_port)
            proxy.ca = ca
            proxy.base = f"https://localhost:{tls_port}"
            proxy.plain = f"http://localhost:{plain_port}"
            yield proxy
        finally:
            if proxy:
                proxy.stop()
            sup.stop()


def test_django_sees_https_and_csrf_works(stack):
    r = requests.get(stack.base + "/secure", verify=stack.ca.pem, timeout=10)
    assert r.status_code == 200 and r.text.split() == ["True", stack.base + "/secure"]
    assert r.headers["Strict-Transport-Security"] == "max-age=3600"
    s = requests.Session()
    page = s.get(stack.base + "/", verify=stack.ca.pem, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    # Over HTTPS Django also checks where a POST comes from, as browsers say.
    r = s.post(stack.base + "/", data={"csrfmiddlewaretoken": token, "name": "Ada"},
               headers={"Origin": stack.base, "Referer": stack.base + "/"}, verify=stack.ca.pem, timeout=10)
    assert r.status_code == 200 and "Hello, Ada!" in r.text
    r = s.post(stack.base + "/", data={"csrfmiddlewaretoken": token, "name": "Eve"},
               headers={"Origin": "https://evil.test", "Referer": "https://evil.test/"}, verify=stack.ca.pem,
               timeout=10)
    assert r.status_code == 403


def test_plain_http_redirects_to_https(stack):
    r = requests.get(stack.plain + "/secure?x=1", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"] == stack.base + "/secure?x=1"
    r = requests.get(stack.plain + "/secure", verify=stack.ca.pem, timeout=10)
    assert r.status_code == 200 and r.text.startswith("True ")


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (tests/run installs it)")
def test_chromium_renders_the_page_with_its_css_over_https_and_http2(stack):
    browser = Browser(stack.ca.pem)
    try:
        nav = browser.load(stack.base + "/")
        assert "errorText" not in nav, nav        # a certificate it distrusts would stop here
        assert browser.eval("location.protocol") == "https:"
        # ALPN gave the browser HTTP/2, for the page and for its stylesheet.
        assert browser.eval("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        assert browser.eval("performance.getEntriesByType('resource').every(e => e.nextHopProtocol == 'h2')")
        assert browser.eval("document.querySelector('h1').textContent") == "It works: Django behind appstack"
        # site.css: h1 { color: #0b5394 } and body { max-width: 40em } came over TLS and apply.
        assert browser.eval("getComputedStyle(document.querySelector('h1')).color") == "rgb(11, 83, 148)"
        assert browser.eval("getComputedStyle(document.body).fontFamily") == "sans-serif"
        css = browser.eval("performance.getEntriesByType('resource').map(e => e.name)")
        assert any(u.startswith(stack.base + "/static/") and u.endswith(".css") for u in css), css
        # The form posts back over HTTPS with the browser's own CSRF cookie and Origin.
        browser.eval("document.querySelector('input[name=name]').value = 'Grace'")
        browser.events.clear()
        browser.eval("document.querySelector('form').submit()")
        browser.load_wait()
        assert browser.eval("document.querySelector('.greeting').textContent") == "Hello, Grace!"
    finally:
        browser.close()
