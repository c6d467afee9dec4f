"""The WSGI application the web server (server_config/serve.py) runs."""

import os

from django.core.wsgi import get_wsgi_application

from server_config.telemetry import start_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server_config.settings")
# Before the handler loads its middleware (the Django instrumentation adds its own); off unless OTEL_* ask.
start_tracing("web")
django_application = get_wsgi_application()

from weather.middleware import CharsetGuardApp  # noqa: E402 - needs the settings module set above

application = CharsetGuardApp(django_application)
