"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server_config.settings")
django_application = get_wsgi_application()

from weather.middleware import CharsetGuardApp  # noqa: E402 - needs the settings module set above

application = CharsetGuardApp(django_application)
