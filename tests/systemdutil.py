"""Helpers for the systemd tests: rendered unit files, a private journald."""
import os
import shutil
import signal
import socket
import subprocess
import time

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("appstack.socket", "appstack.service",
         "appstack-proxy.socket", "appstack-proxy.service")


def render_units(dest, bindir, sysconfdir):
    """Writes the four units into DEST the way `make` substitutes them."""
    paths = []
    for name in UNITS:
        with open(os.path.join(SRCDIR, "units", name + ".in")) as f:
            text = f.read()
        text = text.replace("@bindir@", bindir).replace("@sysconfdir@", sysconfdir)
        path = os.path.join(dest, name)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths


def parse_unit(path):
    """{section: {key: [values]}} of a unit file (keys may repeat)."""
    sections, current = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value):
    """'45s', '1min', '10' -> seconds (the forms the units use)."""
    for suffix, factor in (("min", 60), ("ms", 0.001), ("s", 1), ("h", 3600)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)
