"""[app] preload: an app that uses its databases while it is imported:
Django's connection (SQLite, the djangoproj settings) and a plain sqlite3
connection. Each worker must talk to Django's database over a connection
of its own, not the one the template opened at import."""
import json
import os
import sqlite3
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoproj.settings")
import django  # noqa: E402

django.setup()
from django.db import connection  # noqa: E402

with connection.cursor() as c:
    c.execute("CREATE TABLE IF NOT EXISTS hits (pid INTEGER)")
IMPORT_CONNECTION = connection.connection

RAW = sqlite3.connect(os.environ["PRELOAD_RAW_DB"], check_same_thread=False, timeout=10)
RAW.execute("CREATE TABLE IF NOT EXISTS hits (pid INTEGER)")
RAW.commit()


def application(environ, start_response):
    pid = os.getpid()
    if environ.get("PATH_INFO") == "/sleep":     # keeps this worker busy: the next request goes elsewhere
        time.sleep(float(environ.get("QUERY_STRING") or "0"))
    with connection.cursor() as c:
        c.execute("INSERT INTO hits VALUES (%s)", [pid])
        c.execute("SELECT count(*) FROM hits")
        django_rows = c.fetchone()[0]
    RAW.execute("INSERT INTO hits VALUES (?)", (pid,))
    RAW.commit()
    raw_rows = RAW.execute("SELECT count(*) FROM hits").fetchone()[0]
    body = json.dumps({"pid": pid, "own_connection": connection.connection is not IMPORT_CONNECTION,
                       "django_rows": django_rows, "raw_rows": raw_rows}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
