"""The result backend: django-celery-results' database backend, made safe to lose for a moment.

When a worker loses its broker connection, Celery cancels its running acks-late
tasks (their messages go back to the queue) and records each as RETRY in the
result backend from the worker's main process. If the database went with the
network (a host cut off), that write raised out of the consumer and the worker
exited for good instead of reconnecting. A RETRY state is informational: the
message is redelivered whether it is recorded or not, so a failed write is
logged and the worker carries on. Tasks whose results are ignored get none.
So is STARTED, written before the task's body runs: a failed write is logged and
the body runs, meeting the outage itself (and retrying) rather than the message
being dead-lettered unrun. A task's ending (SUCCESS, FAILURE) is the record of work
already done: it waits up to ENDING_PATIENCE_S for the database to come back.

Each state is written in one statement (an upsert on the task id): the library's
get-or-create then save took four round trips for STARTED and two for SUCCESS,
on the path of every click.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import states
from django.db import DatabaseError, InterfaceError, connection
from django.db.models.functions import Now
from django_celery_results.models import TaskResult

from .adapters.celery_results import RowStoringBackend
from .patience import within_soft_limit
from .storage import upsert

# What a later state of the task rewrites: all but its id, its creation and its start.
_REWRITTEN = ("status", "result", "traceback", "meta", "content_encoding", "content_type", "periodic_task_name",
              "task_name", "task_args", "task_kwargs", "worker", "date_done")

# How long a worker waits for the database to record a task's ending (its result or its failure): a
# restart or a failover. Past it the ending is not recorded and the message goes to the dead letters.
ENDING_PATIENCE_S = 60.0

log = logging.getLogger(__name__)


class ResilientDatabaseBackend(RowStoringBackend):
    """DatabaseBackend whose RETRY records never take a worker down, writing each state in one statement."""

    def store_row(self, fields: dict[str, Any]) -> None:
        """The library's row, as it would write it, upserted on the task id."""
        row = TaskResult(**fields)
        rewritten = list(_REWRITTEN)
        if fields["status"] == states.STARTED:
            # Stamped by the database, as the library does.
            row.date_started = Now()
            rewritten.append("date_started")
        # Within the pool's soft limit, which the wait counts against: past it the limit would cut the
        # wait short and dead-letter the task (a click's FAILURE in CI's nemesis run); the task's own
        # handling of an unrecorded ending (a retry later) is the better path there.
        patience = time.monotonic() + within_soft_limit(ENDING_PATIENCE_S, self.app.conf.task_soft_time_limit)
        delay = 0.2
        while True:
            try:
                upsert([row], unique_fields=["task_id"], update_fields=rewritten)
                return
            except (DatabaseError, InterfaceError) as error:
                if fields["status"] == states.STARTED:
                    # STARTED is written before the body runs: raised there, Celery takes it for an error
                    # of its own and the message goes to the dead letters unrun (found by the nemesis,
                    # during a PostgreSQL restart). The body meets the outage itself and retries.
                    log.warning("task %s: its STARTED state was not recorded (database unavailable: %s)",
                                fields["task_id"], error)
                    return
                if fields["status"] not in states.READY_STATES or time.monotonic() + delay > patience:
                    raise
                # A task's ending, after its work was done: raised, Celery would take the unrecorded
                # ending for a failure and dead-letter work that succeeded (found by the nemesis).
                log.warning("task %s: its %s state waits for the database (%s)", fields["task_id"],
                            fields["status"], error)
                connection.close()  # a connection the restart broke is not reused
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

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
