"""Django tasks as the pools run them: each a Celery task named by its module path, under the interactive policy.

A process that defines a Django task (the web enqueuing it, the pool running it: the
pools import the modules in CELERY_IMPORTS) registers its Celery task. That task keeps
every Celery option the pools give theirs (acks late, time limits, the crash guard,
dead letters) and runs the function as the fetch runs its service: passing faults
retried with backoff, then declined; a pending-fetch slot the task id holds released
when it ends (weather.tasks.CityFetchTask). Django's signals are sent as its
backends send them: `task_started` for each try, `task_finished` once its ending is
recorded (SUCCESSFUL or FAILED; a retry is neither).
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import shared_task, states
from django.db import Error
from django.utils import timezone
from django.utils.module_loading import import_string

from ..tasks import PASSING_FAULT_RETRIES, CityFetchTask, run_with_retries
from .api import (
    Task,
    TaskContext,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_finished,
    task_started,
)


class DjangoTaskRun(CityFetchTask):
    """The Celery task running a Django task: the fetch's guarantees, and Django's `task_finished` at its ending."""

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        super().after_return(status, retval, task_id, args, kwargs, einfo)
        if status not in (states.SUCCESS, states.FAILURE):
            return
        defined: Task = import_string(self.name)
        backend = task_backends[defined.backend]
        # Read back as recorded (Celery calls this after storing the ending); when it cannot be read
        # now, the signal is skipped rather than sent with a guess.
        with contextlib.suppress(Error, TaskResultDoesNotExist):
            task_finished.send(type(backend), task_result=backend.get_result(task_id))


_registered: dict[str, str] = {}  # Celery name -> the lane its definition names


class LaneTask(Task):
    """Django's Task, registering the Celery task that runs it wherever it is defined (the backend's task_class)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        Task.__post_init__(self)  # Django's validation by the backend (zero-argument super() breaks on slots)
        register(self)


def registered_lanes() -> dict[str, str]:
    """Each Django task this process defined and the lane its definition names (`.using()` may send it elsewhere)."""
    return dict(_registered)


def register(task: Task) -> None:
    """The Celery task named `task.module_path`, registered once in this process."""
    name = task.module_path
    if name in _registered:
        return
    _registered[name] = task.queue_name

    def run(self: DjangoTaskRun, *args: Any, **kwargs: Any) -> Any:
        # Looked up at run time: the module's Task, whatever `.using()` copy enqueued it.
        defined: Task = import_string(name)
        running = _running(self, defined, args, kwargs)
        task_started.send(type(task_backends[defined.backend]), task_result=running)
        if defined.takes_context:
            context = TaskContext(task_result=running)
            return run_with_retries(self, lambda: defined.func(context, *args, **kwargs))
        return run_with_retries(self, lambda: defined.func(*args, **kwargs))

    run.__doc__ = f"Runs the Django task {name}."
    shared_task(name=name, bind=True, base=DjangoTaskRun, max_retries=PASSING_FAULT_RETRIES)(run)


def _running(celery_task: DjangoTaskRun, task: Task, args: tuple, kwargs: dict) -> TaskResult:
    """The TaskResult a task taking context sees: this try, running now, on this worker."""
    request = celery_task.request
    now = timezone.now()
    tries = (request.retries or 0) + 1
    return TaskResult(task=task, id=request.id, status=TaskResultStatus.RUNNING, enqueued_at=None, started_at=now,
                      finished_at=None, last_attempted_at=now, args=list(args), kwargs=dict(kwargs),
                      backend=task.backend, errors=[], worker_ids=[request.hostname or ""] * tries)
