"""[app] preload with Django: what the template sets up once before it
forks (worker/warm.c). The URLconf (preload_django_urls) records which
process imported it; its view says which templates Django's cached loader
held before it rendered one. PRELOAD_BROKEN_URLS=1 makes the URLconf fail
to import."""
import os

import django
from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="preload-test-only",
    ROOT_URLCONF="preload_django_urls",
    INSTALLED_APPS=[],
    DATABASES={},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [os.path.join(HERE, "preload_django_templates")]}],
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
