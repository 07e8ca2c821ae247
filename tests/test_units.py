"""The shipped systemd units: systemd-analyze verify is clean, and they say
what appstack(7) promises (socket activation, Type=notify, watchdog, graceful
stop, reload through supctl). Booting them for real is tests/e2e/run."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILDDIR, SRCDIR, prog
from systemdutil import UNITS, parse_unit, render_units, seconds

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


@pytest.fixture
def units(tmpdir_short):
    # verify checks that every ExecStart= binary exists: use the built ones.
    for name in ("appstackd", "supctl", "appstack-proxy"):
        prog(name)
    paths = render_units(tmpdir_short, BUILDDIR, tmpdir_short)
    # An instance of the templates, as "systemctl enable appstack@blog.socket" makes it.
    for kind in ("socket", "service"):
        link = os.path.join(tmpdir_short, f"appstack@blog.{kind}")
        os.symlink(f"appstack@.{kind}", link)
        paths.append(link)
    return {os.path.basename(p): p for p in paths}


def verify(paths):
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).strip()


def test_verify_is_clean(units):
    rc, out = verify(units.values())
    assert rc == 0 and out == "", out


def test_verify_would_catch_a_broken_unit(units):
    """The check above can fail: a typo in a key is reported."""
    path = units["appstack.service"]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("KillMode=mixed", "KillMode=mixd"))
    rc, out = verify(units.values())
    assert "kill mode" in out.lower(), out


def test_service_contract(units):
    svc = parse_unit(units["appstack.service"])["Service"]
    assert svc["Type"] == ["notify"]
    assert svc["NotifyAccess"] == ["main"]
    assert svc["KillMode"] == ["mixed"]          # TERM to the master only
    assert svc["Restart"] == ["on-failure"]
    assert seconds(svc["WatchdogSec"][0]) > 0
    # Longer than graceful_timeout's default, or systemd kills workers that
    # are still finishing their requests.
    assert seconds(svc["TimeoutStopSec"][0]) > 30
    reload_cmd = svc["ExecReload"][0].split()
    assert reload_cmd[0] == os.path.join(BUILDDIR, "supctl")
    assert reload_cmd[-1] == "reload"
    assert svc["ExecStart"][0].split()[0] == os.path.join(BUILDDIR, "appstackd")
    # app.sock lives in the runtime directory and must outlive a stop.
    assert svc["RuntimeDirectory"] == ["appstack"]
    assert svc["RuntimeDirectoryPreserve"] == ["yes"]
    unit = parse_unit(units["appstack.service"])["Unit"]
    assert "appstack.socket" in unit["Requires"]


def test_proxy_contract(units):
    svc = parse_unit(units["appstack-proxy.service"])["Service"]
    assert svc["Type"] == ["notify"]
    assert svc["Restart"] == ["on-failure"]
    assert seconds(svc["WatchdogSec"][0]) > 0
    assert svc["ExecReload"][0].endswith("-HUP $MAINPID")
    assert svc["KillMode"] == ["mixed"]         # TERM to the master, which passes it on
    assert svc["NotifyAccess"] == ["main"]      # the master alone notifies
    unit = parse_unit(units["appstack-proxy.service"])["Unit"]
    # The first request through the proxy starts the application.
    assert "appstack.socket" in " ".join(unit["Wants"])


def test_acme_timer_pokes_the_proxy_it_does_not_start_it(units):
    """The timer asks the running proxy's master to look at its certificate
    (SIGUSR1, what appstack-proxy(8) says); the proxy does the rest."""
    timer = parse_unit(units["appstack-acme.timer"])
    assert timer["Timer"]["Persistent"] == ["true"] and timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    svc = parse_unit(units["appstack-acme.service"])
    assert svc["Unit"]["Requisite"] == ["appstack-proxy.service"]
    assert svc["Service"]["Type"] == ["oneshot"]
    assert svc["Service"]["ExecStart"] == [
        "/bin/systemctl kill --kill-whom=main --signal=SIGUSR1 appstack-proxy.service"]
    proxy = parse_unit(units["appstack-proxy.service"])["Service"]
    assert proxy["StateDirectory"] == ["appstack"]      # $STATE_DIRECTORY: the ACME state


def test_sockets_match_the_config(units):
    """Names and addresses the programs look for (appstack(7), listen.h)."""
    app = parse_unit(units["appstack.socket"])["Socket"]
    http = parse_unit(units["appstack-proxy.socket"])["Socket"]
    assert app["FileDescriptorName"] == ["app"]
    assert app["Service"] == ["appstack.service"]
    assert http["FileDescriptorName"] == ["http"]
    assert http["Service"] == ["appstack-proxy.service"]
    ini = open(os.path.join(SRCDIR, "tests", "e2e", "appstack.ini")).read()
    assert f"listen = unix:{app['ListenStream'][0]}" in ini
    assert f"upstream = unix:{app['ListenStream'][0]}" in ini
    assert f"listen = {http['ListenStream'][0]}" in ini
    # In the runtime directory of the service, which systemd preserves.
    assert app["ListenStream"][0].startswith("/run/appstack/")


def test_template_contract(units):
    """appstack@NAME: the main units' contract, for instance NAME
    (appstackd -a NAME and its default sockets)."""
    main = parse_unit(units["appstack.service"])
    inst = parse_unit(units["appstack@.service"])
    svc = inst["Service"]
    assert svc["ExecStart"] == [os.path.join(BUILDDIR, "appstackd") + " -a %i"]
    assert svc["ExecReload"] == [os.path.join(BUILDDIR, "supctl") + " -a %i reload"]
    assert svc["RuntimeDirectory"] == ["appstack/%i"]
    assert svc["RuntimeDirectoryPreserve"] == ["yes"]
    assert inst["Unit"]["Requires"] == ["appstack@%i.socket"]
    assert inst["Install"]["Also"] == ["appstack@%i.socket"]
    # Everything else (notify, watchdog, kill mode, hardening) as the main unit.
    for key, value in main["Service"].items():
        if key not in ("ExecStart", "ExecReload", "RuntimeDirectory"):
            assert svc.get(key) == value, key
    sock = parse_unit(units["appstack@.socket"])["Socket"]
    main_sock = parse_unit(units["appstack.socket"])["Socket"]
    assert sock["ListenStream"] == ["/run/appstack/%i/app.sock"]
    assert sock["Service"] == ["appstack@%i.service"]
    for key, value in main_sock.items():
        if key not in ("ListenStream", "Service"):
            assert sock.get(key) == value, key


@pytest.mark.parametrize("unit", ["appstack.service", "appstack-proxy.service", "appstack@blog.service"])
def test_hardening_exposure(units, unit):
    """systemd's own exposure score stays in its 'OK' band (< 4.0)."""
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                       cwd=os.path.dirname(units[unit]), capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) < 4.0, r.stdout


def test_built_units_have_the_install_paths():
    """`make` substituted every placeholder in the units it installs."""
    for name in UNITS:
        path = os.path.join(BUILDDIR, "units", name)
        if not os.path.exists(path):
            pytest.fail(f"{path} is not built (run make first)")
        text = open(path).read()
        assert not re.search(r"@(bindir|sysconfdir)@", text), name
        if name.endswith(".service") and name != "appstack-acme.service":
            assert re.search(r"^ExecStart=/\S+/appstack", text, re.M), name
