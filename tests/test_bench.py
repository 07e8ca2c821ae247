"""The benchmark harness itself: it measures real servers, reports what it
measured, and leaves no process behind (bench/run is run by people on their
machines, and an orphaned nginx would skew the next run)."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BUILDDIR, SRCDIR, wait_for

BENCH = os.path.join(SRCDIR, "bench")


def _cmdlines_with(text):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def _run(script, tmp, *args, timeout=120):
    out = os.path.join(tmp, "results")
    r = subprocess.run(
        [os.path.join(BENCH, script), "--builddir", BUILDDIR, "--quick", "--no-docs",
         "--warmup", "0", "--duration", "1", "--out", out, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        return r, json.load(f)


@pytest.mark.timeout(120)
def test_bench_static_measures_nginx_and_cleans_up(tmpdir_short):
    r, res = _run("static", tmpdir_short, "--conc", "16", "--base-conc", "16")
    rows = {(row["case"], s["key"]): s for row in res["rows"] for s in row["stacks"]}
    for case in ("1 KiB", "100 KiB", "10 MiB"):
        nginx = rows[(case, "nginx")]
        assert nginx["n"] == 1 and nginx["rps"]["median"] > 0, nginx
        assert nginx["errors_total"] == 0, nginx
        # appstack-proxy is either measured or its failure is reported.
        mine = rows.get((case, "appstack-proxy"))
        if mine is None:
            assert "appstack-proxy" in res["skipped"]
        else:
            assert mine["n"] == 1 or mine["failures"]
    assert "static files from the front: 1 KiB" in r.stdout and "nginx" in r.stdout
    assert not _cmdlines_with(res["meta"]["workdir"]), "processes left behind"
    assert not os.path.exists(res["meta"]["workdir"])


def _descendants(pid):
    parent = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        pid = todo.pop()
        kids = [c for c, pp in parent.items() if pp == pid]
        out += kids
        todo += kids
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_bench_hello_interrupted_stops_everything(tmpdir_short, sig):
    """Ctrl-C in the middle of a case stops every server it had started; so
    does killing the benchmark outright (a tool's timeout)."""
    out = os.path.join(tmpdir_short, "results")
    p = subprocess.Popen(
        [os.path.join(BENCH, "hello"), "--builddir", BUILDDIR, "--quick", "--no-docs",
         "--duration", "30", "--workers", "2", "--out", out, "--tmp", tmpdir_short],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def servers_under_load():
            kids = _descendants(p.pid)
            names = {_comm(k) for k in kids}
            return kids if "wrk" in names and len(kids) >= 3 else None
        servers = wait_for(servers_under_load, timeout=60, what="a server under wrk load")
        p.send_signal(sig)
        p.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{s}") for s in servers):
            time.sleep(0.1)
        left = [s for s in servers if os.path.exists(f"/proc/{s}")]
        assert not left, f"still running after SIGINT: {left}"
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)    # let it stop its servers
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@pytest.mark.timeout(180)
def test_bench_tls_measures_https_handshakes_and_http2(tmpdir_short):
    r, res = _run("tls", tmpdir_short, "--base-conc", "16", timeout=170)
    rows = {(row["case"], s["key"]): s for row in res["rows"] for s in row["stacks"]}
    for case in ("HTTPS 1 KiB", "HTTPS 100 KiB", "new TLS connections/s (1 KiB, full handshakes)",
                 "new TLS connections/s (1 KiB, resumed by ticket)", "HTTP/2 1 KiB, 100 streams per connection"):
        for key in ("nginx-tls", "appstack-proxy-tls"):
            s = rows[(case, key)]
            assert (s["n"] == 1 and s["rps"]["median"] > 0) or s["failures"], (case, key, s)
        assert rows[(case, "appstack-proxy-tls")]["n"] == 1, rows[(case, "appstack-proxy-tls")]["failures"]
    # nginx keeps its HTTP/2 connections as long as h2load does (its default
    # closes them after 1000 requests, which h2load counts as errors).
    h2 = "HTTP/2 1 KiB, 100 streams per connection"
    for key in ("nginx-tls", "appstack-proxy-tls"):
        assert rows[(h2, key)]["n"] == 0 or rows[(h2, key)]["errors_total"] == 0, (key, rows[(h2, key)])
    assert rows[("hello", "appstack-tls")]["n"] == 1
    assert "HTTP/2 1 KiB, 100 streams per connection" in r.stdout
    assert not _cmdlines_with(res["meta"]["workdir"]), "processes left behind"
    assert not os.path.exists(res["meta"]["workdir"])


@pytest.mark.timeout(120)
def test_bench_websocket_measures_both_fronts(tmpdir_short):
    r, res = _run("websocket", tmpdir_short, timeout=110)
    rows = {(row["case"], s["key"]): s for row in res["rows"] for s in row["stacks"]}
    for key in ("appstack-proxy-ws", "nginx-ws"):
        s = rows[("echo, 1000 connections", key)]
        assert s["n"] == 1 and s["rps"]["median"] > 0 and s["errors_total"] == 0, s
    assert not _cmdlines_with(res["meta"]["workdir"]), "processes left behind"
