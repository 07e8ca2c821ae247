"""appstackd --check and start-up with bad configs: every error is
FILE:LINE: message and the exit status is 1, never a crash."""
import os
import subprocess
import textwrap

import pytest

from conftest import prog

GOOD = """\
[app]
module = sup_app:application

[supervisor]
listen = 127.0.0.1:8000
workers = 2
control = {d}/control.sock
"""

# (name, config text, line of the error, words the message must contain)
BAD = [
    ("unknown key", GOOD + "colour = blue\n", 8, 'unknown key "colour"'),
    ("unknown section", GOOD + "[webserver]\nport = 1\n", 8, "unknown section [webserver]"),
    ("bad number", GOOD.replace("workers = 2", "workers = two"), 6, '"two" is not a whole number'),
    ("number out of range", GOOD.replace("workers = 2", "workers = 0"), 6, "from 1 to"),
    ("bad duration", GOOD + "timeout = 5 parsecs\n", 8, "not a duration"),
    ("bad port", GOOD.replace("127.0.0.1:8000", "127.0.0.1:99999"), 5, "port must be a number"),
    ("bad address", GOOD.replace("127.0.0.1:8000", "300.1.2.3:80"), 5, "not an IP address"),
    ("relative unix path", GOOD.replace("127.0.0.1:8000", "unix:run/app.sock"), 5, "must be absolute"),
    ("missing module", GOOD.replace("module = sup_app:application", "chdir = /"), 1, "has no module"),
    ("malformed module", GOOD.replace("sup_app:application", "sup-app:application"), 1,
     'expected "package.module:callable"'),
    ("no listen", GOOD.replace("listen = 127.0.0.1:8000\n", ""), 4, "has no listen"),
    ("no such user", GOOD + "user = no-such-user-here\n", 8, 'no such user "no-such-user-here"'),
    ("no such group", GOOD + "group = no-such-group-here\n", 8, 'no such group "no-such-group-here"'),
    ("missing chdir", GOOD.replace("module =", "chdir = /no/such/dir\nmodule ="), 1, "/no/such/dir"),
    ("env without =", GOOD.replace("[supervisor]", "env = JUSTANAME\n\n[supervisor]"), 4, 'expected "NAME=value"'),
    ("line without =", GOOD + "just some words\n", 8, 'expected "key = value"'),
    ("key before any section", "workers = 3\n" + GOOD, 1, "outside of any section"),
    ("jitter without max_requests", GOOD + "max_requests_jitter = 10\n", 8, "needs max_requests"),
    ("threads out of range", GOOD + "threads = 0\n", 8, "from 1 to 128"),
    ("threads not a number", GOOD + "threads = eight\n", 8, '"eight" is not a whole number'),
    ("preload not on or off", GOOD.replace("[supervisor]", "preload = sometimes\n\n[supervisor]"), 4,
     'preload: "sometimes" is not on or off'),
    ("relative control path", GOOD.replace("{d}/control.sock", "control.sock"), 7, "must be an absolute path"),
]


def check(path, *args):
    return subprocess.run([prog("appstackd"), "-c", path, *args], capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("name,text,line,words", BAD, ids=[b[0] for b in BAD])
def test_bad_config_check(tmpdir_short, name, text, line, words):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(text.format(d=tmpdir_short))
    r = check(path, "--check")
    assert r.returncode == 1, r
    assert f"{path}:{line}: " in r.stderr and words in r.stderr, r.stderr
    # Every line of the output is an error of the FILE:LINE: form.
    for out in r.stderr.splitlines():
        assert out.startswith(f"{path}:"), r.stderr


def test_bad_config_at_startup_is_the_same_error(tmpdir_short):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(GOOD.format(d=tmpdir_short).replace("workers = 2", "workers = lots"))
    r = check(path)     # no --check: a real start
    assert r.returncode == 1
    assert f"{path}:6: workers: \"lots\" is not a whole number" in r.stderr
    assert not os.path.exists(os.path.join(tmpdir_short, "control.sock"))


def test_several_errors_all_reported(tmpdir_short):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(GOOD.format(d=tmpdir_short).replace("workers = 2", "workers = -1") + "bogus = 1\n")
    r = check(path, "--check")
    assert r.returncode == 1
    assert f"{path}:6:" in r.stderr and f"{path}:8:" in r.stderr


def test_missing_file(tmpdir_short):
    path = os.path.join(tmpdir_short, "nope.ini")
    r = check(path, "--check")
    assert r.returncode == 1
    assert r.stderr.strip() == f"{path}:0: cannot open: No such file or directory"


def test_unreadable_file(tmpdir_short):
    # A directory in place of the file: readable by nobody as a config,
    # even by root (who ignores permission bits).
    path = os.path.join(tmpdir_short, "conf.d")
    os.mkdir(path)
    r = check(path, "--check")
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:0: ") and "Is a directory" in r.stderr


def test_good_config_passes(tmpdir_short):
    path = os.path.join(tmpdir_short, "appstack.ini")
    with open(path, "w") as f:
        f.write(GOOD.format(d=tmpdir_short))
    r = check(path, "--check")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_config_from_environment(tmpdir_short):
    path = os.path.join(tmpdir_short, "env.ini")
    with open(path, "w") as f:
        f.write(textwrap.dedent("[app]\nmodule = x\n"))
    r = subprocess.run([prog("appstackd"), "--check"], capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, APPSTACK_CONFIG=path))
    assert r.returncode == 1
    assert f"{path}:" in r.stderr and "has no listen" in r.stderr


def test_cli(tmpdir_short):
    for name in ("appstackd", "supctl"):
        r = subprocess.run([prog(name), "--help"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and "Usage:" in r.stdout
        r = subprocess.run([prog(name), "--version"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith(name + " ")
        r = subprocess.run([prog(name), "--no-such-option"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "Usage:" in r.stderr
