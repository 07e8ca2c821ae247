"""The distribution tree (make dist, and make deb, which builds the Debian
package from it) holds every file of the source tree: a header missing
from a _SOURCES list builds here but not from the tarball or the package."""
import os
import subprocess

import pytest

from conftest import BUILDDIR, SRCDIR

# Tracked but deliberately not distributed.
NOT_DISTRIBUTED = {".gitignore", "m4/.keep"}


def tracked_files():
    r = subprocess.run(["git", "-C", SRCDIR, "ls-files", "-z"], capture_output=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("not a git checkout: nothing to compare the distribution with")
    return {f for f in r.stdout.decode().split("\0") if f} - NOT_DISTRIBUTED


def test_distribution_holds_every_tracked_file(tmp_path):
    files = tracked_files()
    dist = tmp_path / "appstack-dist"
    r = subprocess.run(["make", "-s", "-C", BUILDDIR, "distdir", f"distdir={dist}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    missing = sorted(f for f in files if not os.path.lexists(dist / f))
    assert not missing, f"tracked files missing from the distribution (add them to a Makefile.inc): {missing}"
