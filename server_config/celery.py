"""The Celery application: wiring only; configuration lives in Django settings."""

import os

from celery import Celery

from routing.bootsteps import DeclareTopology

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server_config.settings")

app = Celery("server", task_cls="weather.guard:CrashGuardedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["consumer"].add(DeclareTopology)
