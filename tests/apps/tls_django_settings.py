"""The example site as a TLS-only site behind a terminating balancer:
HTTPS is known from X-Forwarded-Proto, plain HTTP is redirected."""
from mysite.settings import *  # noqa: F401,F403

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
