"""Test certificates made with the openssl command: a private CA and leaf
certificates (ECDSA P-256 or RSA 2048) for given names, so real clients
(curl, openssl s_client, Python's ssl, Chromium) can verify the proxy
against the CA as they would a public one."""
import os
import ssl
import subprocess

_CA_CACHE = {}


def _run(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _newkey(kind):
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ec" else ["-newkey", "rsa:2048"]


class CA:
    """A CA in DIRECTORY; .pem is its certificate (give it to clients)."""

    def __init__(self, directory, name="appstack test CA"):
        self.dir = directory
        self.pem = os.path.join(directory, "ca.pem")
        self.key = os.path.join(directory, "ca.key")
        _run("req", "-x509", *_newkey("ec"), "-nodes", "-keyout", self.key, "-out", self.pem, "-days", "30",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.serial = 1

    def issue(self, names, kind="ec", stem=None, days=30, ips=("127.0.0.1",)):
        """A leaf for NAMES: returns (certificate path, key path)."""
        stem = os.path.join(self.dir, stem or f"{names[0].replace('*', 'star')}-{kind}")
        key, csr, pem, ext = stem + ".key", stem + ".csr", stem + ".pem", stem + ".ext"
        _run("req", *_newkey(kind), "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
        sans = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
        with open(ext, "w") as f:
            f.write(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        self.serial += 1
        _run("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key, "-set_serial", str(self.serial),
             "-out", pem, "-days", str(days), "-extfile", ext)
        return pem, key

    def client_context(self, alpn=None):
        ctx = ssl.create_default_context(cafile=self.pem)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx


def ca_in(directory):
    """One CA per directory (making keys costs time)."""
    if directory not in _CA_CACHE:
        _CA_CACHE[directory] = CA(directory)
    return _CA_CACHE[directory]
