"""C unit tests of the shared HTTP/1 layer (tests/http1_unit_test.c):
dates, the error writer, the field tables, percent-decoding and Host values,
in the C locale and again under every locale the machine has, plus a few
generated with localedef (an app may call setlocale() inside a worker:
nothing appstack writes or reads on the wire may follow it). The worker
itself is then run with an app that switches to a Turkish locale."""
import json
import os
import re
import subprocess

from conftest import APPS, free_port, prog
from workerutil import Worker, request, worker_config


def run_unit(locales, env=None):
    proc = subprocess.run([prog("tests/http1_unit_test"), *locales], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("ok ")
    return dict(line.split(" ", 2)[1:] for line in proc.stdout.splitlines() if line.startswith("locale "))


def test_in_every_installed_locale():
    names = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=True).stdout.split()
    probes = run_unit(names)
    assert set(probes) == set(names)


def test_in_generated_locales(generated_locales):
    names = sorted(n for n in os.listdir(generated_locales))
    probes = run_unit(names, env=dict(os.environ, LOCPATH=generated_locales))
    # The locales took effect: strftime's day and month names follow them,
    # so a formatter built on strftime would have failed the checks above.
    assert probes["de_DE.UTF-8"] == "strftime=So,Nov"
    assert all(p != "strftime=Sun,Nov" for p in probes.values()), probes


def test_worker_in_a_turkish_locale(generated_locales, tmpdir_short):
    """Date stays an IMF-fixdate, and header names with an "i" still map to
    their environ keys ("I" is not the upper case of "i" in tr_TR)."""
    port = free_port()
    conf = worker_config(tmpdir_short, port, module="locale_app", chdir=APPS)
    env = {"LOCPATH": generated_locales, "APP_LOCALE": "tr_TR.UTF-8"}
    with Worker(tmpdir_short, port, conf, env=env):
        status, headers, body = request(port, path="/", headers=[("X-Hi", "1"), ("if-modified-since", "x"),
                                                                 ("Content-Type", "text/plain")])
    got = json.loads(body)
    assert status == 200 and got["locale"].startswith("tr_TR")
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                        r" \d{4} \d\d:\d\d:\d\d GMT", headers["date"]), headers["date"]
    assert {"HTTP_X_HI", "HTTP_IF_MODIFIED_SINCE", "CONTENT_TYPE", "HTTP_HOST"} <= set(got["keys"]), got
