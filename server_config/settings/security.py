"""Security settings: HTTPS and cookies, the content security policy, login lockouts, who may read /metrics."""

from __future__ import annotations

from datetime import timedelta

from csp.constants import NONE, SELF

from envvars import env_bool, env_int, env_str

from .core import DEBUG

# HTTPS: on by default outside development (redirect, HSTS, secure cookies);
# behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=true so Django
# trusts its X-Forwarded-Proto.
SECURE_HTTPS = env_bool("SECURE_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SECURE_HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER") else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if SECURE_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SESSION_COOKIE_HTTPONLY = True
# The dashboard's script reads the CSRF token from the page, never from the cookie.
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# /metrics names hosts, tasks, queue depths and every doctor finding. With DEBUG off it answers only
# scrapers that send METRICS_TOKEN as a bearer token; without a token it is closed (403), unless
# METRICS_OPEN=true says the web role is reachable from a private network only.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_OPEN = env_bool("METRICS_OPEN", False)

# Every HTML page: scripts and styles from this site's own files only (the dashboard's
# script and the pages' stylesheet are static files), nothing framed, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Password guessing: after LOGIN_FAILURE_LIMIT failures of one username from one client address,
# that address is locked out of that username for LOGIN_LOCKOUT_MINUTES (or until
# `manage.py axes_reset_ip_username <address> <name>`). Counted per pair, so a stranger guessing
# a staff account's password locks out only themselves, never the account everywhere. A correct
# password does not get through a lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
# The same client address as the rate limit: behind NUM_TRUSTED_PROXIES proxies, the one they saw.
AXES_CLIENT_IP_CALLABLE = "weather.http.login_client_address"
AXES_RESET_ON_SUCCESS = True
