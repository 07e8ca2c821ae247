"""appstack-proxy --check for the options of compression, upgrades,
X-Accel-Redirect, limits and the client's address: every bad value is
FILE:LINE: message, exit 1, and the good ones pass."""
import subprocess

import pytest

from conftest import prog
from proxyutil import ENV

GOOD = """\
[proxy]
listen = 127.0.0.1:8080
upstream = unix:/run/appstack/app.sock
"""

# (name, lines added to [proxy] or after it, line of the error, words of the message)
BAD = [
    ("gzip not a bool", "gzip = yes please\n", 4, '"yes please" is not on or off'),
    ("gzip level", "gzip_comp_level = 10\n", 4, "from 1 to 9"),
    ("brotli level", "brotli_comp_level = 12\n", 4, "from 0 to 11"),
    ("min length", "gzip_min_length = lots\n", 4, "not a size"),
    ("bad type", "compress_types = text/html html\n", 4, '"html" is not a media type'),
    ("tunnels", "max_tunnels = -1\n", 4, "from 0 to"),
    ("listen flag", "listen = 127.0.0.1:81 proxy-protocol\n", 4, "known: ssl, http2, proxy_protocol"),
    ("rate", "limit_req = 10/s\n", 4, '"10/s" is not a rate'),
    ("burst", "limit_req = 10r/s burst=lots\n", 4, "burst must be a whole number"),
    ("rate word", "limit_req = 10r/s slowly\n", 4, 'unknown word "slowly"'),
    ("conn", "limit_conn = 0\n", 4, "from 1 to 1000000"),
    ("req status", "limit_req_status = 200\n", 4, "from 400 to 599"),
    ("allow", "limit_allow = 10.0.0.0/33\n", 4, "is not an IP address"),
    ("zone", "limit_zone_size = big\n", 4, "not a size"),
    ("location rate", "[location /login/]\nlimit_req = fast\n", 5, '"fast" is not a rate'),
    ("location without alias", "[location /login/]\nexpires = 1d\n", 4, "has no alias"),
    ("internal without alias", "[location /login/]\nlimit_conn = 1\ninternal = on\n", 4, "internal needs an alias"),
    ("internal", "[location /p/]\nalias = /tmp/\ninternal = maybe\n", 6, '"maybe" is not on or off'),
]

GOOD_EXTRA = [
    "gzip = on\nbrotli = on\ngzip_comp_level = 9\nbrotli_comp_level = 0\ngzip_min_length = 1k\n"
    "compress_types = text/html, application/xml\ncompress_types = *\n",
    "max_tunnels = 0\n",
    "limit_req = 30r/m burst=5 nodelay\nlimit_conn = 10\nlimit_req_status = 503\nlimit_conn_status = 503\n"
    "limit_allow = 10.0.0.0/8 ::1\nlimit_zone_size = 1m\n[location /login/]\nlimit_req = 1r/s\n",
    "listen = 127.0.0.1:81 proxy_protocol\nlisten = unix:/tmp/x.sock http2 proxy_protocol\nreal_ip_from = 10.0.0.0/8\n",
    "[location /p/]\nalias = /tmp/\ninternal = on\n",
]


def check(tmp_path, text):
    path = tmp_path / "appstack.ini"
    path.write_text(text)
    r = subprocess.run([prog("appstack-proxy"), "--check", "-c", str(path)], capture_output=True, text=True,
                       env=ENV, timeout=20)
    return str(path), r


@pytest.mark.parametrize("name,extra,line,words", BAD, ids=[b[0] for b in BAD])
def test_bad_option_is_file_line_message(tmp_path, name, extra, line, words):
    path, r = check(tmp_path, GOOD + extra)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{path}:{line}: " in r.stderr and words in r.stderr, r.stderr


@pytest.mark.parametrize("extra", GOOD_EXTRA)
def test_good_options_pass(tmp_path, extra):
    path, r = check(tmp_path, GOOD + extra)
    assert r.returncode == 0, r.stderr
    assert not r.stderr.strip(), r.stderr


def test_every_error_is_listed(tmp_path):
    path, r = check(tmp_path, GOOD + "".join(b[1] for b in BAD if b[1].count("\n") == 1))
    assert r.returncode == 1
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith(path + ":")]) >= 5


def test_proxy_protocol_without_real_ip_from_is_a_warning(tmp_path):
    path, r = check(tmp_path, GOOD + "listen = 127.0.0.1:81 proxy_protocol\n")
    assert r.returncode == 0 and f"{path}:4: warning: proxy_protocol without real_ip_from" in r.stderr
