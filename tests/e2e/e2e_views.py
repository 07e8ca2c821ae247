"""Views the end-to-end test adds to the installed example site: output
for the journal checks, and a version string the reload check edits."""
import logging
import sys

from django.http import HttpResponse
from django.urls import path

# What a Django site with a console handler does: errors and their
# tracebacks go to stderr, which appstack hands to the journal.
logging.getLogger("django.request").addHandler(logging.StreamHandler(sys.stderr))

VERSION = "version 1"


def version(request):
    return HttpResponse(VERSION + "\n", content_type="text/plain")


def say(request):
    print("e2e-print " + request.GET.get("m", ""), flush=True)
    return HttpResponse(b"said\n", content_type="text/plain")


def boom(request):
    return 1 // 0


urlpatterns = [
    path("e2e/version", version),
    path("e2e/say", say),
    path("e2e/boom", boom),
]
