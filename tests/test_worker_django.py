"""A real Django project (tests/apps/djangoproj, Debian's python3-django)
served by appstack-worker."""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import APPS, free_port, wait_for
from workerutil import Worker, sanitized, worker_config

PROJ = os.path.join(APPS, "djangoproj")


@pytest.fixture(scope="module")
def site():
    d = tempfile.mkdtemp(prefix="as-dj-", dir="/tmp")
    port = free_port()
    cfg = worker_config(d, port, module="djangoproj.wsgi", chdir=PROJ,
                        app_extra=f"env = DJANGO_SETTINGS_MODULE=djangoproj.settings\nenv = DJANGOPROJ_TMP={d}")
    w = Worker(d, port, cfg)
    w.url = f"http://127.0.0.1:{port}"
    w.dir = d
    with w:
        yield w
    shutil.rmtree(d, ignore_errors=True)


def test_template_view(site):
    r = requests.get(site.url + "/?who=appstack")
    assert r.status_code == 200
    assert "<h1>Hello, appstack!</h1>" in r.text
    assert "<li>two</li>" in r.text


def test_form_post_with_csrf_round_trip(site):
    s = requests.Session()
    r = s.get(site.url + "/form/")
    assert r.status_code == 200 and "csrftoken" in s.cookies
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    r = s.post(site.url + "/form/", data={"name": "Ada", "csrfmiddlewaretoken": token},
               headers={"Referer": site.url + "/form/"})
    assert r.status_code == 200 and "Thanks, Ada." in r.text
    r = requests.post(site.url + "/form/", data={"name": "Eve"})    # no cookie, no token
    assert r.status_code == 403


def test_multipart_upload_50mb_streams(site):
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()
    boundary = "appstackboundary7f3a"
    body_path = os.path.join(site.dir, "upload.body")
    with open(body_path, "wb") as f:
        f.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n".encode())
        for _ in range(50):
            f.write(chunk)
            digest.update(chunk)
        f.write(f"\r\n--{boundary}--\r\n".encode())
    before = requests.get(site.url + "/upload/").json()["rss_kb"]
    with open(body_path, "rb") as f:
        r = requests.post(site.url + "/upload/", data=f,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["size"] == 50 << 20 and got["sha256"] == digest.hexdigest() and got["field"] == "hi"
    if not sanitized():
        assert got["rss_kb"] - before < 20 * 1024, (before, got["rss_kb"])


def test_streaming_response(site):
    r = requests.get(site.url + "/stream/", stream=True)
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.text == "".join("line %d\n" % i for i in range(100))


def test_file_response_uses_sendfile(site):
    path = os.path.join(site.dir, "download.bin")
    data = os.urandom(2 * 1024 * 1024 + 3)
    with open(path, "wb") as f:
        f.write(data)
    trace = os.path.join(site.dir, "strace.out")
    st = subprocess.Popen(["strace", "-qq", "-e", "trace=sendfile", "-o", trace, "-p", str(site.proc.pid)])
    try:
        time.sleep(0.5)
        r = requests.get(site.url + "/file/", params={"path": path})
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(10)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    with open(trace) as f:
        assert re.search(r"sendfile\(\d+, \d+, ", f.read())


def test_admin_login_page(site):
    r = requests.get(site.url + "/admin/", allow_redirects=False)
    assert r.status_code == 302 and "/admin/login/" in r.headers["Location"]
    r = requests.get(site.url + "/admin/login/")
    assert r.status_code == 200
    assert "csrfmiddlewaretoken" in r.text and 'name="username"' in r.text


def test_404_and_500_pages_without_debug(site):
    r = requests.get(site.url + "/no/such/page/")
    assert r.status_code == 404 and "djangoproj: page not found" in r.text
    r = requests.get(site.url + "/boom/")
    assert r.status_code == 500 and "djangoproj: server error" in r.text
    assert "boom from a Django view" not in r.text
    wait_for(lambda: "boom from a Django view" in site.log(), what="Django's traceback in the log")
    log = site.log()
    # Django's logging wrote the traceback in one write: one entry
    entry_start = log.rfind("appstack-worker[", 0, log.find("boom from a Django view"))
    entry = log[entry_start:log.find("boom from a Django view")]
    assert "Traceback (most recent call last):" in entry
    assert requests.get(site.url + "/").status_code == 200
