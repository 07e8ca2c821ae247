"""The fuzz targets' seeds and every committed crash reproducer, replayed
through the targets built without libFuzzer (tests/fuzz/replay.c, built by
make check with the project's compiler and, with --enable-sanitizers,
ASan + UBSan). A reproducer lives in tests/fuzz/regress/TARGET/; the
long runs are `make fuzz` (tests/fuzz/fuzz.mk)."""
import os
import subprocess

import pytest

from conftest import BUILDDIR, SRCDIR

TARGETS = ["http_parse", "chunked", "differential", "static_path", "config", "stdio_entry", "site_host",
           "worker_ident", "accept_enc", "proxy_proto", "forwarded"]
FUZZ = os.path.join(SRCDIR, "tests", "fuzz")

# Reproducers whose bug is not fixed yet: file name -> why.
KNOWN = {}


def replay(target, *paths):
    binary = os.path.join(BUILDDIR, "tests", "fuzz", f"replay_{target}")
    if not os.path.exists(binary):
        pytest.fail(f"{binary} is not built (make check builds it)")
    return subprocess.run([binary, *paths], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"))


def reproducers():
    out = []
    for target in TARGETS:
        d = os.path.join(FUZZ, "regress", target)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            marks = [pytest.mark.xfail(reason=KNOWN[name], strict=False)] if name in KNOWN else []
            out.append(pytest.param(target, os.path.join(d, name), id=f"{target}/{name}", marks=marks))
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_seed_corpus_runs_clean(target):
    corpus = os.path.join(FUZZ, "corpus", target)
    assert os.listdir(corpus), f"no seeds for {target}"
    r = replay(target, corpus)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.count("replaying ") == len(os.listdir(corpus))


@pytest.mark.parametrize("target,path", reproducers())
def test_crash_reproducer_is_fixed(target, path):
    r = replay(target, path)
    assert r.returncode == 0, r.stderr[-4000:]

