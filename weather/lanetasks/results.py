"""A Django TaskResult read from Celery's result backend (django-celery-results), its state mapped to Django's."""

from __future__ import annotations

import json
from typing import Any

from celery import states
from django.utils.module_loading import import_string
from django_celery_results.models import TaskResult as CeleryResultRow

from .api import Task, TaskError, TaskResult, TaskResultDoesNotExist, TaskResultStatus

# Celery's states onto Django's four. A retry waits to run again (READY, as Django's own
# backends put it); a revoked or rejected message ended without succeeding (FAILED).
DJANGO_STATUS: dict[str, TaskResultStatus] = {
    states.PENDING: TaskResultStatus.READY,
    states.RECEIVED: TaskResultStatus.READY,
    states.RETRY: TaskResultStatus.READY,
    states.STARTED: TaskResultStatus.RUNNING,
    states.SUCCESS: TaskResultStatus.SUCCESSFUL,
    states.FAILURE: TaskResultStatus.FAILED,
    states.REVOKED: TaskResultStatus.FAILED,
    states.REJECTED: TaskResultStatus.FAILED,
}


def encoded_arguments(value: list | dict) -> str:
    """Arguments as the result row keeps them: the JSON text Celery's argsrepr carries, JSON-encoded again."""
    return json.dumps(json.dumps(value))


def _arguments(stored: str | None, empty: list | dict) -> Any:
    if not stored:
        return empty
    value = json.loads(stored)
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return empty  # sent by something other than this backend: a repr, not JSON


def _errors(row: CeleryResultRow) -> list[TaskError]:
    if row.status == states.SUCCESS or DJANGO_STATUS.get(row.status) != TaskResultStatus.FAILED:
        return []
    try:
        error = json.loads(row.result or "{}")
        path = f"{error.get('exc_module') or 'builtins'}.{error['exc_type']}"
        said = error.get("exc_message")
        message = " ".join(map(str, said)) if isinstance(said, list) else str(said or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        path, message = "builtins.Exception", ""
    # A declined task (quota used up, a provider fault outlasting its retries) was ended without a
    # traceback: its reason is the exception's own line, as a traceback's last line would give it.
    return [TaskError(exception_class_path=path, traceback=row.traceback or f"{path}: {message}".rstrip(": "))]


def django_result(task_id: str, backend_alias: str) -> TaskResult:
    """The Django TaskResult of a task this backend enqueued; TaskResultDoesNotExist for any other id."""
    row = CeleryResultRow.objects.filter(task_id=task_id).first()
    if row is None or not row.task_name:
        raise TaskResultDoesNotExist(f"no task {task_id!r}")
    try:
        task = import_string(row.task_name)
    except ImportError:
        task = None
    if not isinstance(task, Task):
        raise TaskResultDoesNotExist(f"task {task_id!r} ({row.task_name}) was not enqueued through Django's Tasks API")
    status = DJANGO_STATUS.get(row.status, TaskResultStatus.READY)
    finished = status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    result = TaskResult(
        task=task, id=task_id, status=status, enqueued_at=row.date_created, started_at=row.date_started,
        finished_at=row.date_done if finished else None, last_attempted_at=row.date_started,
        args=_arguments(row.task_args, []), kwargs=_arguments(row.task_kwargs, {}), backend=backend_alias,
        errors=_errors(row), worker_ids=[row.worker] if row.worker else [],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", json.loads(row.result) if row.result else None)
    return result
