"""/api/tasks/<id>: a task's state from the result backend, with its result or its error."""

from __future__ import annotations

from uuid import UUID

from celery.result import AsyncResult
from celery.states import READY_STATES
from django.http import HttpRequest
from django_celery_results.models import TaskResult
from ninja import Path, Router

from .schemas import Problem, TaskStatus

router = Router(tags=["tasks"])


def describe(result: AsyncResult) -> dict:
    """What a client may know of a task: state, result or error, and when it ran (fields it lacks are left out)."""
    # Read once: until a task is ready, each look at AsyncResult.state reads the result row again.
    state = result.state
    body: dict = {"task_id": result.id, "state": state}
    if state == "SUCCESS":
        body["result"] = result.result
    elif state in ("FAILURE", "RETRY"):
        error = result.result
        body["error"] = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    # PENDING means no result row yet: nothing more to read on the hottest poll.
    times = None if state == "PENDING" else (
        TaskResult.objects.filter(task_id=result.id).values_list("date_started", "date_done").first())
    started, done = times or (None, None)
    if started:
        body["date_started"] = started
    if done:
        body["date_done"] = done
    if started and done and state in READY_STATES:
        # The start is stamped by the database, the end by the worker: across hosts
        # whose clocks drift this is approximate, never negative.
        body["run_seconds"] = round(max(0.0, (done - started).total_seconds()), 3)
    return body


@router.get("/{task_id}", response={200: TaskStatus, 400: Problem, 404: Problem}, operation_id="task_status",
            url_name="task_status", exclude_none=True)
def task_status(request: HttpRequest, task_id: UUID = Path(..., description="the id a 202 answered with")) -> dict:
    """The state of a task (PENDING, STARTED, RETRY, SUCCESS, FAILURE) with its result or error."""
    return describe(AsyncResult(str(task_id)))
