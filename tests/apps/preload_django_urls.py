"""The URLconf of preload_django_app."""
import os
import time

from django.http import JsonResponse
from django.template import engines
from django.urls import path

IMPORT_PID = os.getpid()
if os.environ.get("PRELOAD_BROKEN_URLS") == "1":
    raise RuntimeError("this URLconf cannot be imported")


def cached_templates():
    engine = engines["django"].engine
    return sorted(name for loader in engine.template_loaders for name in getattr(loader, "get_template_cache", {}))


def page(request):
    before = cached_templates()
    if request.path == "/sleep":    # keeps this worker busy: the next request goes elsewhere
        time.sleep(float(request.META.get("QUERY_STRING") or "0"))
    html = engines["django"].get_template("page.html").render({"items": ["a", "b"]})
    return JsonResponse({"pid": os.getpid(), "urls_import_pid": IMPORT_PID, "cached_before": before,
                         "html": html})


urlpatterns = [path("", page), path("sleep", page)]
