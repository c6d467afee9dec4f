"""The result backend: django-celery-results' database backend, made safe to lose for a moment.

When a worker loses its broker connection, Celery cancels its running acks-late
tasks (their messages go back to the queue) and records each as RETRY in the
result backend from the worker's main process. If the database went with the
network (a host cut off), that write raised out of the consumer and the worker
exited for good instead of reconnecting. A RETRY state is informational: the
message is redelivered whether it is recorded or not, so a failed write is
logged and the worker carries on. Tasks whose results are ignored get none.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states
from django.db import DatabaseError, InterfaceError
from django_celery_results.backends.database import DatabaseBackend

log = logging.getLogger(__name__)


class ResilientDatabaseBackend(DatabaseBackend):
    """DatabaseBackend whose RETRY records never take a worker down."""

    def mark_as_retry(self, task_id: str, exc: Exception, traceback: Any = None, request: Any = None,
                      store_result: bool = True, state: str = states.RETRY) -> Any:
        """Record a retry when results are kept and the database answers; otherwise say why and go on."""
        task = self.app.tasks.get(getattr(request, "task", None) or "")
        if getattr(request, "ignore_result", False) or getattr(task, "ignore_result", False):
            return None
        try:
            return super().mark_as_retry(task_id, exc, traceback=traceback, request=request,
                                         store_result=store_result, state=state)
        except (DatabaseError, InterfaceError) as error:
            log.warning("task %s: its RETRY state was not recorded (database unavailable: %s)", task_id, error)
            return None
