"""The django.tasks backend: Django's Tasks API enqueued onto the lanes through Celery.

    TASKS = {"default": {"BACKEND": "weather.lanetasks.backend.LaneBackend"}}

A task's `queue_name` is its lane (routing/lanes.py), checked when the task is made (its
definition, or `.using()` before an enqueue) and by Django's system checks (an undeclared
name in QUEUES). Its
`priority` is sent as the message priority of routing/priorities.py's table, the default
0 included (never unset). `run_after` becomes a countdown the lane can hold (on quorum
lanes, Celery's native delayed delivery). The result is Celery's, read from
django-celery-results; the enqueue writes it as PENDING, so a result exists from the
moment there is an id. Inside a transaction the message is published when it commits,
and not at all if it rolls back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from celery import current_app, states, uuid
from django.core import checks
from django.db import connection, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult as CeleryResultRow

from routing import LANE_NAMES, deployed
from routing.broker import BrokerUnavailableError, ensure_publishing_allowed
from routing.priorities import message_priority, serves_priorities

from ..backoff import broker_countdown
from ..publishing import REQUEST_CONFIRM_TIMEOUT_S, publishing, request_publish_retry
from .api import (
    DEFAULT_TASK_PRIORITY,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultStatus,
    task_enqueued,
)
from .results import django_result, encoded_arguments
from .runner import LaneTask

LANES_HINT = f"the lanes are {', '.join(LANE_NAMES)} (routing/lanes.py)"

# The id the next enqueue takes, and whether it publishes at once (inside the caller's transaction).
_given_id: ContextVar[tuple[str, bool] | None] = ContextVar("lane_task_id", default=None)


@contextmanager
def enqueue_as(task_id: str, *, at_once: bool = False) -> Iterator[None]:
    """The next enqueue in this block takes `task_id`: ids known up front, as weather/dispatch.py needs them.

    A request answers with the id, and claims the work under it, before the message is
    published; Django's API makes the id at the enqueue. Like any enqueue it publishes
    when the caller's transaction commits; `at_once` publishes inside it instead, for a
    claim that commits with its publish or not at all (weather/dispatch.py).
    """
    token = _given_id.set((task_id, at_once))
    try:
        yield
    finally:
        _given_id.reset(token)


class LaneBackend(BaseTaskBackend):
    """Enqueues Django tasks as Celery messages on their lane; results from django-celery-results."""

    task_class = LaneTask
    supports_defer = True
    supports_async_task = False  # the pools run functions, not coroutines
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        # The lanes are the queues; QUEUES, when given, narrows them (and is checked against them).
        self.queues = set(params.get("QUEUES") or LANE_NAMES)

    def validate_task(self, task: Task) -> None:
        """Django's checks, with the lane and its priorities named when they are what is wrong."""
        lane = task.queue_name
        if lane not in LANE_NAMES:
            raise InvalidTask(f"queue_name {lane!r} is not a lane: {LANES_HINT}")
        if lane not in self.queues:
            raise InvalidTask(f"queue_name {lane!r} is not among TASKS[{self.alias!r}]['QUEUES'] {sorted(self.queues)}")
        generation = deployed().generation
        if task.priority != DEFAULT_TASK_PRIORITY and not serves_priorities(lane, generation):
            raise InvalidTask(f"lane {lane!r} serves in arrival order on RabbitMQ {int(generation)} (its quorum "
                              f"queue has no priorities there): enqueue at the default priority, 0")
        super().validate_task(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Record the task as PENDING and publish it on its lane (when the caller's transaction commits).

        The task was validated when it was made (its definition, or `.using()`): Tasks are frozen.
        """
        args, kwargs = list(args), dict(kwargs)
        given_id, at_once = _given_id.get() or (uuid(), False)
        task_id, now = given_id, timezone.now()
        _given_id.set(None)  # the one enqueue it was given for
        options: dict[str, Any] = {
            "task_id": task_id, "queue": task.queue_name, "priority": message_priority(task.priority),
            # The result row keeps these: get_result gives the arguments back as they were sent.
            "argsrepr": json.dumps(args), "kwargsrepr": json.dumps(kwargs),
        }
        if task.run_after is not None and (delay := (task.run_after - now).total_seconds()) > 0:
            options["countdown"] = broker_countdown(delay, task.queue_name)
        CeleryResultRow.objects.create(task_id=task_id, task_name=task.module_path, status=states.PENDING,
                                       task_args=encoded_arguments(args), task_kwargs=encoded_arguments(kwargs),
                                       content_type="application/json", content_encoding="utf-8")
        result = TaskResult(task=task, id=task_id, status=TaskResultStatus.READY, enqueued_at=now, started_at=None,
                            finished_at=None, last_attempted_at=None, args=args, kwargs=kwargs, backend=self.alias,
                            errors=[], worker_ids=[])

        def publish() -> None:
            try:
                with publishing():
                    ensure_publishing_allowed()
                    current_app.send_task(task.module_path, args=args, kwargs=kwargs, retry=True,
                                          retry_policy=request_publish_retry(),
                                          confirm_timeout=REQUEST_CONFIRM_TIMEOUT_S, **options)
            except BrokerUnavailableError:
                # Nothing was queued: no result may say it is waiting. Inside a transaction (a claim's)
                # its rollback takes the row back, even with the database gone meanwhile.
                if not connection.in_atomic_block:
                    CeleryResultRow.objects.filter(task_id=task_id, status=states.PENDING).delete()
                raise
            # Django's signal, when the message is on its lane: never for one a rollback kept back.
            task_enqueued.send(type(self), task_result=result)

        if connection.in_atomic_block and not at_once:
            transaction.on_commit(publish, robust=False)
        else:
            publish()
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result as Django describes it, read from Celery's result backend."""
        return django_result(result_id, self.alias)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """An undeclared queue in QUEUES is an error here, not a task defined into a lane that does not exist."""
        for name in sorted(self.queues - set(LANE_NAMES)):
            yield checks.Error(f"TASKS[{self.alias!r}]['QUEUES'] names {name!r}, which is not a lane",
                               hint=LANES_HINT, obj=self.alias, id="f_brain.E001")
