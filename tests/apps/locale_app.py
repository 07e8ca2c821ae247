"""A WSGI app that switches the worker process to another locale at import
(LC_ALL from APP_LOCALE, as an app calling setlocale(LC_ALL, "") under such
a LANG does), then answers with the HTTP_* keys of its environ as JSON."""
import json
import locale
import os

locale.setlocale(locale.LC_ALL, os.environ["APP_LOCALE"])


def application(environ, start_response):
    keys = sorted(k for k in environ if k.startswith("HTTP_") or k.startswith("CONTENT_"))
    body = json.dumps({"keys": keys, "locale": locale.setlocale(locale.LC_ALL)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Input", "Ok")])
    return [body]
