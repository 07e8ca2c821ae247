"""Views for the proxy's edge features: a page big enough to compress, a
streamed response whose second half waits for the test (so the test can see
the first part arrive, compressed, before the rest exists), and file
downloads handed to the proxy with X-Accel-Redirect the way
django-sendfile2's nginx backend does it."""
import mimetypes
import os
import time
from urllib.parse import quote

from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.urls import path

from mysite.urls import urlpatterns as site_urls

GATE = os.environ.get("EDGE_STREAM_GATE", "/nonexistent")
PROTECTED = os.environ.get("EDGE_PROTECTED_ROOT", "/nonexistent")


def page(request):
    rows = "".join(f"<tr><td>row {i}</td><td>{'lorem ipsum dolor sit amet ' * 3}</td></tr>\n" for i in range(400))
    return HttpResponse(f"<!doctype html><html><body><table>{rows}</table></body></html>")


def stream(request):
    def parts():
        yield ("<p>first part " + "streamed text " * 40 + "</p>\n").encode()
        deadline = time.monotonic() + 20
        while not os.path.exists(GATE) and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(3):
            yield (f"<p>later part {i} " + "more streamed text " * 40 + "</p>\n").encode()
    return StreamingHttpResponse(parts(), content_type="text/html; charset=utf-8")


def sendfile(request, filename, attachment=False):
    """django-sendfile2's nginx backend, as its code does it: the file's
    type and disposition from Django, the body from the proxy."""
    full = os.path.realpath(os.path.join(PROTECTED, filename))
    if not full.startswith(os.path.realpath(PROTECTED) + os.sep) or not os.path.isfile(full):
        raise Http404
    response = HttpResponse()
    mimetype, encoding = mimetypes.guess_type(full)
    response["Content-Type"] = mimetype or "application/octet-stream"
    if attachment:
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(os.path.basename(full))}"
    response["X-Accel-Redirect"] = quote("/protected/" + os.path.relpath(full, PROTECTED))
    return response


def download(request, name):
    if not request.COOKIES.get("auth") == "yes":
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return sendfile(request, name, attachment="attach" in request.GET)


def raw_accel(request):
    """Whatever X-Accel-Redirect the test asks for (traversal attempts)."""
    response = HttpResponse("should not be seen\n", content_type="text/plain")
    response["X-Accel-Redirect"] = request.GET["to"]
    return response


def whoami(request):
    m = request.META
    return HttpResponse(" | ".join(str(m.get(k, "-")) for k in (
        "REMOTE_ADDR", "REMOTE_PORT", "HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED")) + "\n", content_type="text/plain")


urlpatterns = site_urls + [
    path("edge/whoami", whoami),
    path("edge/page", page),
    path("edge/stream", stream),
    path("edge/download/<path:name>", download),
    path("edge/accel", raw_accel),
]
