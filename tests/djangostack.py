"""The Django example site (examples/mysite) behind a real appstackd and
appstack-proxy, with its static files collected and served by the proxy's
alias: the one stack the Django tests of the proxy start, each with its own
settings module and proxy options."""
import contextlib
import os
import subprocess
import tempfile

from conftest import APPS, EXAMPLES, free_port
from proxyutil import Proxy
from supervisorutil import ENV as SUP_ENV, Supervisor

SITE = os.path.join(EXAMPLES, "mysite")


@contextlib.contextmanager
def django_stack(proxy_extra="", locations="", workers=2, listen_flags="", settings="edge_django_settings",
                 static_extra="", port=None):
    """Yields the proxy (with .port, .base, .tmp, .sup, .gate, .protected,
    .static_root). PROXY_EXTRA goes into [proxy], STATIC_EXTRA into
    [location /static/], LOCATIONS after it; "{protected}" in LOCATIONS is
    the directory tests/apps/edge_django_urls.py serves protected files
    from, and EDGE_STREAM_GATE the file its streaming view waits for."""
    with tempfile.TemporaryDirectory(prefix="as-django-", dir="/tmp") as tmp:
        static_root = os.path.join(tmp, "static_root")
        protected = os.path.join(tmp, "protected")
        os.mkdir(protected)
        gate = os.path.join(tmp, "gate")
        env = dict(SUP_ENV, MYSITE_STATIC_ROOT=static_root, MYSITE_DB=os.path.join(tmp, "db.sqlite3"))
        subprocess.run(["/usr/bin/python3", os.path.join(SITE, "manage.py"), "collectstatic", "--noinput", "-v0"],
                       check=True, env=env, timeout=120)
        port = port or free_port()
        cfg = os.path.join(tmp, "appstack.ini")
        with open(cfg, "w") as f:
            f.write(f"""[app]
module = mysite.wsgi:application
chdir = {SITE}
pythonpath = {APPS}
env = DJANGO_SETTINGS_MODULE={settings}
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
{static_extra}
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
