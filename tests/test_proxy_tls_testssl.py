"""testssl.sh against an ssl listen with the default settings (an ECDSA and
an RSA certificate side by side): no protocol or cipher it rates weak, no
vulnerability it finds. Its JSON findings are judged, not its text."""
import json
import os
import shutil
import subprocess

import pytest

from proxyutil import Upstream
from test_proxy_tls import TlsProxy, pairs
from tlsutil import CA

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
# Findings that are about the test set-up, not about the proxy.
IGNORED = {"engine_problem", "scanTime", "DNS_CAArecord", "cert_chain_of_trust", "cert_trust",
           "OCSP_stapling", "cert_ocspURL", "cert_crlDistributionPoints"}


@pytest.mark.skipif(not TESTSSL, reason="testssl.sh is not installed (tests/run installs it)")
def test_testssl_finds_nothing_weak(tmpdir_short):
    ca = CA(tmpdir_short)
    up = Upstream()
    proxy = TlsProxy(tmpdir_short, up.addr, pairs(ca.issue(["localhost"], "ec"), ca.issue(["localhost"], "rsa")))
    report = os.path.join(tmpdir_short, "testssl.json")
    try:
        # protocols, cipher categories, forward secrecy, vulnerabilities
        r = subprocess.run([TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--jsonfile", report,
                            "--ip", "one", "-p", "-s", "-f", "-U", f"localhost:{proxy.tls_port}"],
                           capture_output=True, text=True, timeout=400)
        assert os.path.exists(report), r.stdout[-3000:] + r.stderr[-3000:]
        with open(report) as f:
            findings = json.load(f)
    finally:
        proxy.stop()
        up.close()
    by_id = {f["id"]: f for f in findings}
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[old]["finding"].startswith("not offered"), by_id[old]
    for new in ("TLS1_2", "TLS1_3"):
        assert by_id[new]["finding"].startswith("offered"), by_id[new]
    bad = [f for f in findings if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL")
           and f["id"] not in IGNORED]
    assert not bad, "\n".join(f"{f['severity']} {f['id']}: {f['finding']}" for f in bad)
    assert len([f for f in findings if f["severity"] == "OK"]) > 20     # it did test
