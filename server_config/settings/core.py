"""Core Django settings: debug, the secret key, hosts, apps and middleware, templates, static files, logging."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from envvars import env_bool, env_list, env_str

from .. import logsetup, paths

BASE_DIR = paths.BASE_DIR
VAR_DIR = paths.var_dir()

DEBUG = env_bool("DEBUG", False)
# What .env.example holds where a secret belongs: copied unchanged, it must not start.
PLACEHOLDER_SECRET = "change-me"


def refuse_placeholder(name: str, value: str | None) -> None:
    """Outside development, refuse a secret still set to the .env.example placeholder."""
    if not DEBUG and value and PLACEHOLDER_SECRET in value.lower():
        raise ImproperlyConfigured(f"{name} still holds the .env.example placeholder: set a real secret")


SECRET_KEY = env_str("SECRET_KEY")
refuse_placeholder("SECRET_KEY", SECRET_KEY)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-local-development-only"
elif not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for DEBUG off: use 50+ random characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the served host names when DEBUG is off")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    # Listed so /api/docs is rendered with the package's own Swagger UI files, not a CDN's.
    "ninja",
    # Failed logins counted per client and per username; lockouts listed in the admin and on /ops/.
    "axes",
    # Django's Tasks API (django.tasks from Django 6), enqueued onto the lanes (weather/lanetasks/).
    "django_tasks",
    "weather",
]

MIDDLEWARE = [
    # Outermost: every response, probes included, carries a request id and gets one access line.
    "weather.requestlog.RequestContextMiddleware",
    # HEAD answers carry the GET's headers and no body, whatever the server under us does.
    "weather.middleware.HeadWithoutBodyMiddleware",
    "weather.ops.middleware.ProbeMiddleware",  # first: probes skip host checks and the HTTPS redirect
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Static files straight after the security headers, before sessions and CSRF do any work.
    # WhiteNoise, with the manifest and source maps kept from clients (server_config/static.py).
    "server_config.static.BuildFilesHiddenWhiteNoise",
    # Before anything reads request.GET or request.POST (CSRF does, for POSTs).
    "weather.middleware.CharsetGuardMiddleware",
    "weather.api.middleware.JsonApiErrorsMiddleware",
    # Outside sessions and CSRF: an answer that sets their cookies is marked private.
    "weather.middleware.PrivateWhenPersonalMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out login before the view runs.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "server_config.urls"
WSGI_APPLICATION = "server_config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = paths.static_root()
# Served by WhiteNoise in every run mode (the production web server included): compressed, with
# content-hashed names cached for a year. `collectstatic` fills STATIC_ROOT first
# (Dockerfile, scripts/run, the release step, scripts/test).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# LOG_FORMAT=text|json and LOG_LEVEL, alike in the web server, the app, pools and beat: each line
# carries the request id and the task's id, name, lane and retry (server_config/logsetup.py).
LOGGING_CONFIG = "server_config.logsetup.configure"
LOGGING = logsetup.from_environment()
