"""The Django example site over HTTPS through appstack-proxy, as a person
and a browser see it: Django knows the request is secure (the example sets
SECURE_PROXY_SSL_HEADER), the CSRF form works with the Origin a browser
sends, plain HTTP redirects, and headless Chromium, trusting the test CA,
renders the page with its stylesheet applied, over HTTP/2."""
import re
import tempfile

import pytest
import requests

from browserutil import CHROMIUM, Browser
from conftest import free_port
from djangostack import django_stack
from tlsutil import CA


@pytest.fixture(scope="module")
def stack():
    with tempfile.TemporaryDirectory(prefix="as-ca-", dir="/tmp") as catmp:
        ca = CA(catmp)
        cert, key = ca.issue(["localhost"], "ec")
        tls_port, plain_port = free_port(), free_port()
        with django_stack(f"listen = 127.0.0.1:{plain_port}\ncertificate = {cert}\ncertificate_key = {key}\n"
                          "redirect_https = on\nhsts = 1h", listen_flags="ssl", settings="proxy_django_settings",
                          static_extra="expires = 30d", port=tls_port) as proxy:
            proxy.ca = ca
            proxy.base = f"https://localhost:{tls_port}"
            proxy.plain = f"http://localhost:{plain_port}"
            yield proxy


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
