"""The example site's settings with the proxy tests' extra views mounted."""
from mysite.settings import *  # noqa: F401,F403

ROOT_URLCONF = "proxy_django_urls"
