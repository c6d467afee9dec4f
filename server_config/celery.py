"""The Celery application: wiring only; configuration lives in Django settings."""

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery, signals
from django.conf import settings
from django.db import close_old_connections

from routing.expiry import leave_expiry_to_the_worker
from workers.liveness import TouchLivenessFile
from workers.pools import current_pool

from .logsetup import configure
from .telemetry import start_tracing, stop_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server_config.settings")

app = Celery("server", task_cls="weather.guard:CrashGuardedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["consumer"].add(TouchLivenessFile)
signals.before_task_publish.connect(leave_expiry_to_the_worker, weak=False)


@app.on_after_configure.connect
def make_local_broker_folders(sender: Celery, **_: Any) -> None:
    """The filesystem fallback's folders (scripts/run, no RabbitMQ), made when the app first reads its settings."""
    if str(sender.conf.broker_url).startswith("filesystem://"):
        options = sender.conf.broker_transport_options
        for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@signals.setup_logging.connect
def log_like_the_web(loglevel: int | None = None, **_: Any) -> None:
    """Pools and beat log through settings.LOGGING (text or JSON, with each task's context), not Celery's format."""
    configure(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.task_prerun.connect
@signals.task_postrun.connect
def keep_database_connections(task: Any = None, **_: Any) -> None:
    """Around each task, Django's rule for a request: drop a connection past CONN_MAX_AGE or after an error.

    Celery's own Django fixup would close every connection before and after each
    task; settings.CELERY_DB_REUSE_MAX turns that off. A kept connection is checked
    before its next use (CONN_HEALTH_CHECKS), so one PostgreSQL closed is replaced.
    """
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()


@signals.worker_process_init.connect
def trace_pool_child(**_: Any) -> None:
    """Each prefork child traces on its own (an export thread does not survive the fork)."""
    pool = current_pool()
    start_tracing(f"worker-{pool.name if pool else 'default'}")


@signals.worker_process_shutdown.connect
def flush_traces(**_: Any) -> None:
    """A recycled or stopping child exports what it buffered."""
    stop_tracing()


@signals.beat_init.connect
def trace_beat(**_: Any) -> None:
    """Beat's sends are publish spans."""
    start_tracing("beat")
