"""appstack-proxy in front of a real appstackd running the Django example
site: pages, CSRF round trip, upload, streaming, the admin's collected CSS
through the alias, slow clients, and a worker killed under a GET."""
import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import wait_for
from djangostack import django_stack


@pytest.fixture(scope="module")
def stack():
    with django_stack("client_max_body_size = 20m\nclient_header_timeout = 30", settings="proxy_django_settings",
                      static_extra="expires = 30d") as proxy:
        yield proxy


def test_pages_and_collected_admin_css(stack):
    r = requests.get(stack.base + "/", timeout=10)
    assert r.status_code == 200 and "It works" in r.text
    css = re.search(r'href="(/static/[^"]+\.css)"', r.text).group(1)
    c = requests.get(stack.base + css, timeout=10)
    assert c.status_code == 200 and c.headers["Content-Type"] == "text/css" and c.content
    login = requests.get(stack.base + "/admin/login/", timeout=10)
    assert login.status_code == 200
    hrefs = re.findall(r'href="(/static/admin/[^"]+\.css)"', login.text)
    assert hrefs, "the admin page links no stylesheet"
    for href in hrefs:
        c = requests.get(stack.base + href, timeout=10)
        assert c.status_code == 200, href
        assert c.headers["Content-Type"] == "text/css" and c.headers["Cache-Control"] == "max-age=2592000"


def test_post_with_csrf(stack):
    s = requests.Session()
    page = s.get(stack.base + "/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = s.post(stack.base + "/", data={"csrfmiddlewaretoken": token, "name": "Ada"}, timeout=10)
    assert r.status_code == 200 and "Hello, Ada!" in r.text
    r = requests.post(stack.base + "/", data={"name": "Mallory"}, timeout=10)
    assert r.status_code == 403


def test_upload(stack):
    data = os.urandom(3 << 20)
    r = requests.post(stack.base + "/upload", files={"file": ("blob.bin", data)}, timeout=30)
    assert r.status_code == 200
    assert r.text.split() == ["blob.bin", str(len(data)), hashlib.sha256(data).hexdigest()]


def test_streaming_response(stack):
    r = requests.get(stack.base + "/stream", timeout=10)
    assert r.status_code == 200
    assert r.text == "".join(f"part {i}\n" for i in range(5))


def test_worker_killed_mid_get_is_retried(stack):
    result = {}

    def client():
        result["r"] = requests.get(stack.base + "/slow?t=1.5", timeout=30)
    t = threading.Thread(target=client)
    t.start()
    busy = wait_for(lambda: stack.sup.workers("busy"), timeout=10, what="a busy worker")
    os.kill(busy[0]["pid"], signal.SIGKILL)
    t.join(30)
    r = result["r"]
    assert r.status_code == 200 and r.text.startswith("slow done")
    assert int(r.text.split()[2]) != busy[0]["pid"]
    stack.sup.wait_ready(2, timeout=30)


def test_slow_clients_never_hold_workers(stack):
    stack.sup.wait_ready(2, timeout=30)
    request = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n" + b"x" * 20
    slow = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", int(stack.base.rsplit(":", 1)[1])), timeout=10)
            s.setblocking(False)
            slow.append(s)
        states, ok = [], 0
        for second in range(5):
            for s in slow:                  # one more byte each, every second
                try:
                    s.send(request[second:second + 1])
                except BlockingIOError:
                    pass
            for _ in range(3):
                r = requests.get(stack.base + "/pid", timeout=10)
                ok += r.status_code == 200
            states.append([w["state"] for w in stack.sup.workers()])
            time.sleep(1)
        assert ok == 15
        for st in states:
            assert st.count("idle") >= 1, states    # never all workers taken
    finally:
        for s in slow:
            s.close()
