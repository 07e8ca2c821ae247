import hashlib
import os

from django import forms
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt


def home(request):
    return render(request, "home.html", {"who": request.GET.get("who", "world"),
                                         "items": ["one", "two", "three"]})


class NameForm(forms.Form):
    name = forms.CharField(max_length=50)


def form(request):
    if request.method == "POST":
        f = NameForm(request.POST)
        if f.is_valid():
            return render(request, "thanks.html", {"name": f.cleaned_data["name"]})
    else:
        f = NameForm()
    return render(request, "form.html", {"form": f})


def _rss_kb():
    """Peak RSS (VmHWM): what the upload cost at its worst."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@csrf_exempt
def upload(request):
    if request.method != "POST":
        return JsonResponse({"rss_kb": _rss_kb()})
    f = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in f.chunks():
        digest.update(chunk)
    return JsonResponse({"size": f.size, "sha256": digest.hexdigest(), "rss_kb": _rss_kb(),
                         "field": request.POST.get("note", "")})


def stream(request):
    def lines():
        for i in range(100):
            yield "line %d\n" % i
    return StreamingHttpResponse(lines(), content_type="text/plain")


def file(request):
    path = request.GET.get("path", "")
    if not os.path.isfile(path):
        raise Http404("no such file")
    return FileResponse(open(path, "rb"), content_type="application/octet-stream")


def boom(request):
    raise RuntimeError("boom from a Django view")
