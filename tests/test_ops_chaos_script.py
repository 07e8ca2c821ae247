"""bench/chaos itself, at its smallest: it counts what it claims to count,
exits 0 only when appstack lost nothing, and leaves no process behind."""
import json
import os
import subprocess

import pytest

from conftest import BUILDDIR, SRCDIR
from opsutil import MODES, mode_options


def _pids_with(text):
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(pid))
        except (OSError, ValueError):
            continue
    return out


@pytest.mark.parametrize("mode", MODES)
def test_chaos_script_reload_appstack_and_gunicorn(tmpdir_short, mode):
    out = os.path.join(tmpdir_short, "results")
    r = subprocess.run([os.path.join(SRCDIR, "bench", "chaos"), "--builddir", BUILDDIR, "--duration", "5",
                        "--warmup", "0", "--apps", "hello", "--stacks", "appstack,gunicorn",
                        "--scenarios", "reload", "--conc", "8", "--no-docs", "--out", out, "--tmp", tmpdir_short,
                        *mode_options(mode)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        results = {x["stack"]: x for x in json.load(f)["results"]}
    assert set(results) == {"appstack", "gunicorn"}
    for res in results.values():
        assert res["events"] == 2 and not res["event_errors"], res
        assert res["requests"] > 100 and res["head_requests"] > 10, res
        assert res["alive_after"], res
    a = results["appstack"]
    assert a["non2xx"] == 0 and a["sock_errors"] == 0, a
    assert sum(a["by_status"].values()) + a["sock_errors"] == a["requests"]
    assert "reload every 2 s" in r.stdout
    assert not _pids_with(tmpdir_short + "/"), "processes left behind"
