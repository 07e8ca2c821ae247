"""The example site's settings with the edge tests' views mounted."""
from mysite.settings import *  # noqa: F401,F403

ROOT_URLCONF = "edge_django_urls"
