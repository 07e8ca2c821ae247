"""appstack init on real Django projects (Debian's python3-django): the
layouts of django-admin startproject, a src/ layout with a virtualenv, and
settings split into a package; and broken ones, which must be refused with
the reason, exit 1 and nothing written. Every configuration it writes is
then served by appstackd and appstack-proxy, with the sockets moved into the
test's directory, and its static files fetched through the proxy.

--enable is tested in a booted machine (tests/e2e/package): here it would
enable units of the host."""
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from conftest import SRCDIR, free_port, prog, wait_for
from proxyutil import Proxy, get
from supervisorutil import Supervisor

DJANGO_ADMIN = "/usr/bin/django-admin"
pytestmark = pytest.mark.skipif(not os.path.exists(DJANGO_ADMIN), reason="python3-django is not installed")


@pytest.fixture(scope="module")
def datadir(tmp_path_factory):
    """What /usr/share/appstack holds once installed."""
    d = tmp_path_factory.mktemp("datadir")
    os.symlink(os.path.join(SRCDIR, "init", "django_probe.py"), d / "django_probe.py")
    os.symlink(os.path.join(SRCDIR, "examples", "appstack.ini"), d / "appstack.ini")
    return str(d)


class Init:
    def __init__(self, datadir, tmp):
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("APPSTACK_CONFIG", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
        self.env["APPSTACK_DATADIR"] = datadir
        self.config = os.path.join(tmp, "etc", "appstack.ini")

    def __call__(self, *args, via="appstack"):
        cmd = [prog("appstack"), "init"] if via == "appstack" else [prog("supctl"), "-c", self.config, "init"]
        if via == "appstack":
            args = (*args, "-c", self.config)
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, env=self.env)

    def text(self):
        with open(self.config) as f:
            return f.read()


@pytest.fixture
def init(datadir, tmp_path):
    return Init(datadir, str(tmp_path))


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def value(text, key, section=None):
    """The values of KEY (in SECTION) of an INI text."""
    out, current = [], None
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif section in (None, current) and re.match(rf"{re.escape(key)}\s*=", line):
            out.append(line.split("=", 1)[1].strip())
    return out


def startproject(where, name="mysite"):
    os.makedirs(where, exist_ok=True)
    subprocess.run([DJANGO_ADMIN, "startproject", name, where], check=True, capture_output=True, timeout=60)


def append(path, text):
    with open(path, "a") as f:
        f.write(textwrap.dedent(text))


def serve(config, tmp):
    """appstackd and appstack-proxy on CONFIG with its sockets in TMP and one
    worker: (supervisor, proxy)."""
    with open(config) as f:
        text = f.read()
    port = free_port()
    sock = f"unix:{tmp}/app.sock"
    text = re.sub(r"(?m)^listen = unix:.*$", f"listen = {sock}", text)
    text = re.sub(r"(?m)^upstream = .*$", f"upstream = {sock}", text)
    text = re.sub(r"(?m)^control = .*$", f"control = {tmp}/control.sock", text)
    text = re.sub(r"(?m)^listen = 0\.0\.0\.0:8080$", f"listen = 127.0.0.1:{port}", text)
    text = re.sub(r"(?m)^workers = \d+$", "workers = 1", text)
    served = os.path.join(tmp, "served.ini")
    with open(served, "w") as f:
        f.write(text)
    sup = Supervisor(served, None)
    sup.wait_control()
    sup.wait_ready(1, timeout=60)
    return sup, Proxy(served, port)


def assert_serves(init, tmp, static_file, static_url, host="localhost", page="/admin/login/"):
    sup, proxy = serve(init.config, tmp)
    try:
        r = get(proxy.port, page, headers={"Host": host})
        assert r.status == 200 and b"Django" in r.body, (r.status, r.body[:300])
        r = get(proxy.port, static_url, headers={"Host": host})
        with open(static_file, "rb") as f:
            assert r.status == 200 and r.body == f.read(), (static_url, r.status)
        assert "Cache-Control" in r.headers or "cache-control" in {k.lower() for k in r.headers}
    finally:
        proxy.stop()
        sup.stop()


# ---------------------------------------------------------------- layouts

def test_startproject_refused_without_static_root_then_served(init, tmp_path):
    project = str(tmp_path / "mysite")
    startproject(project)
    r = init(project, "--domain", "www.example.com")
    assert r.returncode == 1, r
    assert "STATIC_ROOT is not set in mysite.settings" in r.stderr and 'STATIC_ROOT = BASE_DIR / "static_root"' in r.stderr
    assert not os.path.exists(init.config) and not os.path.exists(os.path.join(project, "static_root"))

    append(os.path.join(project, "mysite", "settings.py"), 'STATIC_ROOT = BASE_DIR / "static_root"\n')
    r = ok(init(project, "--domain", "www.example.com"))
    assert "DEBUG = True in mysite.settings" in r.stderr
    assert "ALLOWED_HOSTS = [] in mysite.settings does not let www.example.com in" in r.stderr
    text = init.text()
    assert value(text, "module", "app") == ["mysite.wsgi:application"]
    assert value(text, "chdir", "app") == [project]
    assert value(text, "env", "app") == ["DJANGO_SETTINGS_MODULE=mysite.settings"]
    assert value(text, "virtualenv") == []
    assert value(text, "alias", "location /static/") == [project + "/static_root/"]
    assert int(value(text, "workers")[0]) >= 2
    css = os.path.join(project, "static_root", "admin", "css", "base.css")
    assert os.path.isfile(css), "collectstatic did not run"

    # Idempotent: the same file, untouched, and collectstatic copies nothing.
    mtime = os.stat(init.config).st_mtime_ns
    r = ok(init(project, "--domain", "www.example.com"))
    assert "is up to date" in r.stdout and "0 static files copied" in r.stdout
    assert init.text() == text and os.stat(init.config).st_mtime_ns == mtime

    assert_serves(init, str(tmp_path), css, "/static/admin/css/base.css")


def test_src_layout_with_virtualenv(init, tmp_path):
    top = tmp_path / "shop"
    src = top / "src"
    startproject(str(src), "shop")
    apps = src / "apps" / "catalog"
    (apps / "static" / "catalog").mkdir(parents=True)
    (apps / "__init__.py").write_text("")
    (apps / "static" / "catalog" / "shop.css").write_text("body { color: green }\n")
    # manage.py and wsgi.py both put apps/ on sys.path, as such projects do.
    hack = 'import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).resolve().parent{} / "apps"))\n'
    for path, parent in ((src / "manage.py", ""), (src / "shop" / "wsgi.py", ".parent")):
        code = path.read_text()
        path.write_text(code.replace("import os\n", "import os\n" + hack.format(parent), 1))
    append(str(src / "shop" / "settings.py"), """
        DEBUG = False
        ALLOWED_HOSTS = ["shop.example", "localhost"]
        INSTALLED_APPS += ["catalog"]
        STATIC_URL = "/assets/"
        STATIC_ROOT = BASE_DIR.parent / "public" / "assets"
        MEDIA_URL = "/media/"
        MEDIA_ROOT = BASE_DIR.parent / "public" / "media"
        """)
    (top / "public" / "media").mkdir(parents=True)
    venv = top / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)

    r = ok(init(str(top), "--venv", str(venv), "--domain", "shop.example"))
    assert "DEBUG" not in r.stderr and "ALLOWED_HOSTS" not in r.stderr, r.stderr
    text = init.text()
    assert value(text, "module", "app") == ["shop.wsgi:application"]
    assert value(text, "chdir", "app") == [str(src)]
    assert value(text, "virtualenv", "app") == [str(venv)]
    assert value(text, "pythonpath", "app") == [str(src / "apps")]
    assert value(text, "alias", "location /assets/") == [str(top / "public" / "assets") + "/"]
    assert value(text, "alias", "location /media/") == [str(top / "public" / "media") + "/"]
    css = top / "public" / "assets" / "catalog" / "shop.css"
    assert css.is_file()

    assert_serves(init, str(tmp_path), str(css), "/assets/catalog/shop.css", host="shop.example")


def test_split_settings_package(init, tmp_path):
    project = tmp_path / "site"
    startproject(str(project))
    pkg = project / "mysite" / "settings"
    pkg.mkdir()
    (project / "mysite" / "settings.py").rename(pkg / "base.py")
    (pkg / "__init__.py").write_text("")
    # BASE_DIR in base.py is one directory deeper now.
    base = (pkg / "base.py").read_text().replace("Path(__file__).resolve().parent.parent",
                                                 "Path(__file__).resolve().parent.parent.parent")
    (pkg / "base.py").write_text(base)
    (pkg / "dev.py").write_text('from .base import *\nDEBUG = True\nSTATIC_ROOT = BASE_DIR / "dev_static"\n')
    (pkg / "production.py").write_text(
        'from .base import *\nDEBUG = False\nALLOWED_HOSTS = ["localhost"]\n'
        'STATIC_ROOT = BASE_DIR / "prod_static"\n')
    for name, module in (("manage.py", "mysite.settings.dev"), ("mysite/wsgi.py", "mysite.settings.production")):
        path = project / name
        path.write_text(path.read_text().replace("'mysite.settings'", f"'{module}'"))

    r = ok(init(str(project)))
    assert "manage.py uses mysite.settings.dev" in r.stdout and "mysite.settings.production" in r.stdout
    assert "DEBUG = True" not in r.stderr
    text = init.text()
    assert value(text, "env", "app") == ["DJANGO_SETTINGS_MODULE=mysite.settings.production"]
    assert value(text, "alias", "location /static/") == [str(project / "prod_static") + "/"]
    assert not (project / "dev_static").exists()
    css = project / "prod_static" / "admin" / "css" / "base.css"
    assert css.is_file()

    assert_serves(init, str(tmp_path), str(css), "/static/admin/css/base.css")


# ---------------------------------------------------------------- refusals

def refused(init, r, *words):
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    for w in words:
        assert w in r.stderr, f"{w!r} not in:\n{r.stderr}"
    assert not os.path.exists(init.config), "a refusal wrote the configuration"


def test_settings_that_raise_on_import(init, tmp_path):
    project = str(tmp_path / "broken")
    startproject(project)
    append(os.path.join(project, "mysite", "settings.py"),
           'STATIC_ROOT = BASE_DIR / "static_root"\nSECRET_KEY = os.environ["MYSITE_SECRET"]\n')
    path = os.path.join(project, "mysite", "settings.py")
    with open(path) as f:
        code = f.read()
    with open(path, "w") as f:
        f.write("import os\n" + code)
    r = init(project)
    refused(init, r, "importing the settings module mysite.settings raised KeyError: 'MYSITE_SECRET'",
            "Traceback")
    assert not os.path.exists(os.path.join(project, "static_root")), "collectstatic ran anyway"


def test_settings_reading_the_environment_get_it_from_the_file(init, tmp_path):
    """The refusal says where the variable goes; an env line put there by
    hand is used to run the project and kept in the file init writes."""
    project = str(tmp_path / "secret")
    startproject(project)
    path = os.path.join(project, "mysite", "settings.py")
    with open(path) as f:
        code = f.read()
    with open(path, "w") as f:
        f.write("import os\n" + code + 'STATIC_ROOT = BASE_DIR / "static_root"\n'
                'SECRET_KEY = os.environ["MYSITE_SECRET"]\n')
    refused(init, init(project), "KeyError: 'MYSITE_SECRET'", 'an "env = NAME=value" line under [app] in ' + init.config)
    os.makedirs(os.path.dirname(init.config))
    with open(init.config, "w") as f:
        f.write("[app]\nenv = MYSITE_SECRET=s3cret=x\n")
    r = init(project)
    assert r.returncode == 1 and "edited by hand" in r.stderr, r.stderr
    ok(init(project, "--force"))
    assert value(init.text(), "env", "app") == ["DJANGO_SETTINGS_MODULE=mysite.settings", "MYSITE_SECRET=s3cret=x"]
    assert "is up to date" in ok(init(project)).stdout


def test_no_manage_py(init, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    refused(init, init(str(empty)), "no manage.py in", "django-admin startproject")


def test_virtualenv_of_another_python(init, tmp_path):
    project = str(tmp_path / "p")
    startproject(project)
    venv = tmp_path / "p" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /opt/python3.12/bin\nversion = 3.12.1\n")
    refused(init, init(project), "was made by the Python in /opt/python3.12/bin", "-m venv")


def test_no_wsgi_application(init, tmp_path):
    project = str(tmp_path / "p")
    startproject(project)
    append(os.path.join(project, "mysite", "settings.py"), "del WSGI_APPLICATION\n")
    refused(init, init(project), "mysite.settings has no WSGI_APPLICATION", 'WSGI_APPLICATION = "mysite.wsgi.application"')


# ---------------------------------------------------------------- the file

@pytest.fixture
def configured(init, tmp_path):
    project = str(tmp_path / "mysite")
    startproject(project)
    append(os.path.join(project, "mysite", "settings.py"), 'STATIC_ROOT = BASE_DIR / "static_root"\n')
    return project


def test_hand_edited_file_is_kept_without_force(init, configured):
    ok(init(configured))
    edited = init.text().replace("timeout = 30", "timeout = 120")
    with open(init.config, "w") as f:
        f.write(edited)
    r = init(configured)
    assert r.returncode == 1 and "edited by hand" in r.stderr and "--force" in r.stderr
    assert "-timeout = 120" in r.stdout and "+timeout = 30" in r.stdout, r.stdout
    assert init.text() == edited
    r = ok(init(configured, "--force"))
    assert "timeout = 30" in init.text() and "timeout = 120" not in init.text()


def test_own_file_is_rewritten_when_the_project_changes(init, configured):
    ok(init(configured))
    append(os.path.join(configured, "mysite", "settings.py"),
           'MEDIA_URL = "/uploads/"\nMEDIA_ROOT = BASE_DIR / "uploads"\n')
    ok(init(configured))
    assert value(init.text(), "alias", "location /uploads/") == [configured + "/uploads/"]


def test_packaged_example_is_replaced(init, configured):
    os.makedirs(os.path.dirname(init.config))
    shutil.copy(os.path.join(SRCDIR, "examples", "appstack.ini"), init.config)
    ok(init(configured))
    assert value(init.text(), "module", "app") == ["mysite.wsgi:application"]


def test_supctl_init_is_appstack_init(init, configured):
    r = ok(init(configured, via="supctl"))
    assert "wrote " + init.config in r.stdout
    assert value(init.text(), "module", "app") == ["mysite.wsgi:application"]


def test_name_writes_an_instance_config_and_prints_its_site(init, configured):
    r = ok(init(configured, "--name", "blog", "--domain", "blog.example"))
    text = init.text()
    assert value(text, "listen", "supervisor") == ["unix:/run/appstack/blog/app.sock"]
    assert value(text, "control", "supervisor") == ["/run/appstack/blog/control.sock"]
    assert "[proxy]" not in text and "[location" not in text
    assert "[site blog]\nserver_name = blog.example\nupstream = unix:/run/appstack/blog/app.sock" in r.stdout
    assert "[location /static/]" in r.stdout


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs here: --enable would change the host")
def test_enable_without_systemd_is_refused_before_anything(init, configured):
    refused(init, init(configured, "--enable"), "systemd is not running")
    assert not os.path.exists(os.path.join(configured, "static_root"))
