"""The example site's URLs plus views the proxy tests need: an upload, a
streamed response, a slow page, the worker's pid and what Django thinks of
the request's scheme."""
import hashlib
import os
import time

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from mysite.urls import urlpatterns as site_urls


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    digest = hashlib.sha256(f.read()).hexdigest()
    return HttpResponse(f"{f.name} {f.size} {digest}\n", content_type="text/plain")


def stream(request):
    def parts():
        for i in range(5):
            yield f"part {i}\n".encode()
            time.sleep(0.05)
    return StreamingHttpResponse(parts(), content_type="text/plain")


def slow(request):
    time.sleep(float(request.GET.get("t", "1")))
    return HttpResponse(f"slow done {os.getpid()}\n", content_type="text/plain")


def secure(request):
    return HttpResponse(f"{request.is_secure()} {request.build_absolute_uri()}\n", content_type="text/plain")


def pid(request):
    return HttpResponse(f"{os.getpid()}\n", content_type="text/plain")


urlpatterns = site_urls + [
    path("upload", upload),
    path("stream", stream),
    path("slow", slow),
    path("pid", pid),
    path("secure", secure),
]
