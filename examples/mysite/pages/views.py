import os

from django.http import HttpResponse
from django.shortcuts import render


def home(request):
    """A template page with a form: the classic CSRF round trip."""
    name = ""
    if request.method == "POST":
        name = request.POST.get("name", "")[:100]
    return render(request, "pages/home.html", {"name": name, "pid": os.getpid()})


def hello(request):
    return HttpResponse(b"Hello from Django\n", content_type="text/plain")
