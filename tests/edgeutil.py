"""The Django example behind appstackd and appstack-proxy, with the views
of tests/apps/edge_django_urls.py, for the tests of the proxy's edge
features (compression, X-Accel-Redirect, limits, the client's address)."""
import contextlib
import os
import subprocess
import tempfile

from conftest import APPS, EXAMPLES, free_port
from proxyutil import Proxy
from supervisorutil import ENV as SUP_ENV, Supervisor

SITE = os.path.join(EXAMPLES, "mysite")


@contextlib.contextmanager
def django_stack(proxy_extra="", locations="", workers=2, listen_flags=""):
    """Yields the proxy (with .base, .tmp, .sup, .gate, .protected)."""
    with tempfile.TemporaryDirectory(prefix="as-edge-", dir="/tmp") as tmp:
        static_root = os.path.join(tmp, "static_root")
        protected = os.path.join(tmp, "protected")
        os.mkdir(protected)
        gate = os.path.join(tmp, "gate")
        env = dict(SUP_ENV, MYSITE_STATIC_ROOT=static_root, MYSITE_DB=os.path.join(tmp, "db.sqlite3"))
        subprocess.run(["/usr/bin/python3", os.path.join(SITE, "manage.py"), "collectstatic", "--noinput", "-v0"],
                       check=True, env=env, timeout=120)
        port = free_port()
        cfg = os.path.join(tmp, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"""[app]
module = mysite.wsgi:application
chdir = {SITE}
pythonpath = {APPS}
env = DJANGO_SETTINGS_MODULE=edge_django_settings
env = MYSITE_STATIC_ROOT={static_root}
env = MYSITE_DB={tmp}/db.sqlite3
env = EDGE_STREAM_GATE={gate}
env = EDGE_PROTECTED_ROOT={protected}

[supervisor]
listen = unix:{tmp}/app.sock
workers = {workers}
timeout = 30
control = {tmp}/control.sock

[proxy]
listen = 127.0.0.1:{port} {listen_flags}
upstream = unix:{tmp}/app.sock
workers = 1
{proxy_extra}

[location /static/]
alias = {static_root}/
{locations}
""".replace("{protected}", protected))
        sup = Supervisor(cfg, None, env=env)
        proxy = None
        try:
            sup.wait_ready(workers, timeout=60)
            proxy = Proxy(cfg, port)
            proxy.sup, proxy.tmp, proxy.gate, proxy.protected = sup, tmp, gate, protected
            proxy.static_root = static_root
            proxy.base = f"http://127.0.0.1:{port}"
            yield proxy
        finally:
            if proxy:
                proxy.stop()
            sup.stop()
