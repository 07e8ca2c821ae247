"""Asks a Django project about itself, for appstack init.

Runs under the project's interpreter (the system python3, or the one of its
virtualenv), as the user the workers will run as, and prints one JSON
object on stdout: what it found, or {"error": ..., "detail": ...}.

    django_probe.py discover MANAGE_PY
        Runs manage.py as "python manage.py" would, up to the point where it
        hands over to Django: the settings module it chooses, and what it
        adds to sys.path. Then imports that settings module for
        WSGI_APPLICATION.

    django_probe.py app CHDIR WSGI_APPLICATION [DOMAIN]
        Imports the WSGI application the way a worker does (CHDIR first on
        sys.path, DJANGO_SETTINGS_MODULE as the environment has it), and
        reports the settings appstack needs: the settings module in effect,
        STATIC_URL/ROOT, MEDIA_URL/ROOT, DEBUG, ALLOWED_HOSTS and whether
        they let DOMAIN in (Django's own validate_host).

Nothing here parses Python source: every answer comes from running the
project's own code."""
import importlib
import json
import os
import runpy
import sys
import traceback


def reply(obj, status=0):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    os._exit(status)    # no atexit handlers or threads of the project


def fail(error, exc=None):
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc else ""
    reply({"error": error, "detail": detail}, 1)


def last_line(exc):
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


class HandedOver(BaseException):
    """Raised where manage.py calls Django: we have what we came for."""


def discover(manage_py):
    project = os.path.dirname(os.path.abspath(manage_py))
    os.chdir(project)
    sys.path[0] = project           # what "python manage.py" puts there
    before = list(sys.path)
    try:
        import django
        from django.core import management
    except ImportError as e:
        fail(f"Django cannot be imported by {sys.executable} ({last_line(e)}): "
             "install python3-django, or give the project's virtualenv with --venv", e)

    def execute_from_command_line(argv=None):
        raise HandedOver()

    management.execute_from_command_line = execute_from_command_line
    sys.argv = [manage_py, "check"]
    try:
        runpy.run_path(manage_py, run_name="__main__")
        fail(f"{manage_py} never calls Django's execute_from_command_line: is it a Django manage.py?")
    except HandedOver:
        pass
    except SystemExit as e:
        fail(f"{manage_py} exited ({e.code}) before handing over to Django")
    except BaseException as e:
        fail(f"{manage_py} raised {last_line(e)}", e)

    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings_module:
        fail(f"{manage_py} sets no DJANGO_SETTINGS_MODULE: set it in manage.py, "
             "or run appstack init with DJANGO_SETTINGS_MODULE in its environment")
    added = [p for p in sys.path if p not in before and p]
    try:
        mod = importlib.import_module(settings_module)
    except BaseException as e:
        fail(f"importing the settings module {settings_module} raised {last_line(e)}", e)
    reply({
        "django_version": django.get_version(),
        "project": project,
        "settings_module": settings_module,
        "sys_path_added": [os.path.abspath(p) for p in added],
        "wsgi_application": getattr(mod, "WSGI_APPLICATION", None),
    })


def url_path(url):
    """The path part of a relative STATIC_URL/MEDIA_URL, or None for one on
    another host (a CDN: not served here)."""
    if not url or "://" in url or url.startswith("//"):
        return None
    return url if url.startswith("/") else "/" + url


def app(chdir, wsgi_application, domain=None):
    os.chdir(chdir)
    sys.path[0] = chdir
    module, _, name = wsgi_application.rpartition(".")
    if not module:
        fail(f'WSGI_APPLICATION = "{wsgi_application}" is not "package.module.callable"')
    try:
        wsgi = importlib.import_module(module)
    except BaseException as e:
        from django.core.exceptions import ImproperlyConfigured
        if isinstance(e, ImproperlyConfigured) and not os.environ.get("DJANGO_SETTINGS_MODULE"):
            # wsgi.py chooses no settings module: the caller names manage.py's.
            reply({"needs_settings_module": True}, 3)
        fail(f"importing {module} (WSGI_APPLICATION) raised {last_line(e)}", e)
    application = getattr(wsgi, name, None)
    if not callable(application):
        fail(f"{module} has no callable {name} (WSGI_APPLICATION = \"{wsgi_application}\")")

    from django.conf import settings
    from django.http.request import validate_host
    try:
        installed = list(settings.INSTALLED_APPS)
        hosts = list(settings.ALLOWED_HOSTS)
        found = {
            "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE"),
            "module": module,
            "callable": name,
            "debug": bool(settings.DEBUG),
            "allowed_hosts": hosts,
            "domain_allowed": validate_host(domain, hosts) if domain else None,
            "staticfiles": "django.contrib.staticfiles" in installed,
            "static_url": url_path(settings.STATIC_URL),
            "static_url_raw": settings.STATIC_URL,
            "static_root": str(settings.STATIC_ROOT) if settings.STATIC_ROOT else None,
            "media_url": url_path(settings.MEDIA_URL),
            "media_url_raw": settings.MEDIA_URL,
            "media_root": str(settings.MEDIA_ROOT) if settings.MEDIA_ROOT else None,
        }
    except BaseException as e:
        fail(f"reading the settings raised {last_line(e)}", e)
    reply(found)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "discover":
        discover(sys.argv[2])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "app":
        app(*sys.argv[2:])
    fail("usage: django_probe.py discover MANAGE_PY | app CHDIR WSGI_APPLICATION [DOMAIN]")


if __name__ == "__main__":
    main()
