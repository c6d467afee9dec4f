"""The django.tasks backend's contract without a broker: lanes, priorities, flags, states and system checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import current_app, states
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from routing import BULK, INTERACTIVE, LANE_NAMES
from routing.generations import GENERATION_CONF_KEY, BrokerGeneration
from weather import jobs
from weather.lanetasks import runner as lane_runner
from weather.lanetasks.api import (
    InvalidTask,
    Task,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    task,
    task_backends,
    task_started,
)
from weather.lanetasks.backend import LaneBackend
from weather.lanetasks.results import DJANGO_STATUS

BACKEND = "weather.lanetasks.backend.LaneBackend"


@pytest.fixture
def generation(monkeypatch):
    """State the broker generation this process runs against (settings.RABBITMQ_GENERATION, through Celery's conf)."""
    def state(value: BrokerGeneration) -> None:
        monkeypatch.setitem(current_app.conf, GENERATION_CONF_KEY, int(value))
    return state


def test_a_queue_name_is_a_lane_or_a_clear_error():
    with pytest.raises(InvalidTask, match=r"'undeclared' is not a lane: the lanes are interactive, bulk, maintenance"):
        jobs.fetch_city.using(queue_name="undeclared")
    with pytest.raises(InvalidTask, match="'default' is not a lane"):
        task(a_function_on_no_lane)  # Django's default queue name is no lane of ours


def a_function_on_no_lane() -> None:
    """A module-level function, so only the queue is wrong."""


def test_a_priority_on_a_lane_without_priorities_is_refused_and_allowed_where_the_broker_has_them(generation):
    generation(BrokerGeneration.RABBITMQ_3)
    assert jobs.fetch_city.using(priority=50).priority == 50, "the interactive lane is a priority queue"
    with pytest.raises(InvalidTask, match="'bulk' serves in arrival order on RabbitMQ 3"):
        jobs.summarize_day.using(priority=50)
    assert jobs.summarize_day.using(priority=0).queue_name == BULK.name, "the default is fine anywhere"
    generation(BrokerGeneration.RABBITMQ_4)
    assert jobs.summarize_day.using(priority=50).priority == 50


def test_the_flags_say_what_the_backend_does():
    backend = task_backends["default"]
    assert (backend.supports_defer, backend.supports_get_result, backend.supports_priority) == (True, True, True)
    assert backend.supports_async_task is False
    with pytest.raises(InvalidTask, match="async"):
        task(queue_name=INTERACTIVE.name)(a_coroutine)
    assert backend.queues == set(LANE_NAMES)


async def a_coroutine() -> None:
    """The pools run functions: a coroutine task is refused when it is defined."""


def test_every_celery_state_has_a_django_status():
    assert set(states.ALL_STATES) | {states.REJECTED} <= set(DJANGO_STATUS)
    assert DJANGO_STATUS[states.PENDING] is TaskResultStatus.READY
    assert DJANGO_STATUS[states.RETRY] is TaskResultStatus.READY
    assert DJANGO_STATUS[states.STARTED] is TaskResultStatus.RUNNING


def test_django_s_system_checks_reject_an_undeclared_queue():
    undeclared = {"default": {"BACKEND": BACKEND, "QUEUES": ["interactive", "undeclared"]}}
    with (override_settings(TASKS=undeclared),
          pytest.raises(SystemCheckError, match=r"(?s)f_brain\.E001.*'undeclared', which is not a lane")):
        call_command("check")
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["interactive", "bulk"]}}):
        call_command("check")


def context_seen(context: TaskContext, city_id: int) -> dict:
    """What a task taking context sees of its own run (made a Django task by the fixture below)."""
    result = context.task_result
    return {"city_id": city_id, "attempt": context.attempt, "id": result.id, "status": result.status,
            "worker": result.worker_ids[-1]}


@pytest.fixture
def context_task(monkeypatch) -> Iterator[Task]:
    """`context_seen` as a Django task for one test, then forgotten: doctor compares the pools' tasks with every
    Django task this process defined, and the pools never import the tests."""
    defined = task(takes_context=True, queue_name=INTERACTIVE.name)(context_seen)
    monkeypatch.setitem(globals(), "context_seen", defined)  # where the runner looks it up by module path
    yield defined
    lane_runner._registered.pop(defined.module_path, None)
    current_app.tasks.pop(defined.module_path, None)


def test_a_task_taking_context_sees_its_try_and_worker_and_django_hears_it_start(context_task):
    # The Celery task the pools run for it, called as a worker calls it: its request set, not eagerly.
    runner = current_app.tasks[context_task.module_path]
    started = []

    def on_started(sender: type, task_result: TaskResult, **kwargs: object) -> None:
        started.append((sender, task_result.id, task_result.status))

    task_started.connect(on_started)
    runner.push_request(id="lane-task-1", retries=2, hostname="interactive@host-a", args=[7], kwargs={})
    try:
        seen = runner.run(7)
    finally:
        runner.pop_request()
        task_started.disconnect(on_started)
    assert seen == {"city_id": 7, "attempt": 3, "id": "lane-task-1", "status": TaskResultStatus.RUNNING,
                    "worker": "interactive@host-a"}
    assert started == [(LaneBackend, "lane-task-1", TaskResultStatus.RUNNING)]
