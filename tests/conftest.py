"""Fixtures: the simulator on loopback, real worker pools on RabbitMQ, the test database."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from celery import Celery
from django.conf import settings
from django.contrib.staticfiles import handlers as staticfiles_handlers
from django.db import connection
from kombu import Producer
from pytest_django.live_server_helper import LiveServer

from routing import BrokerGeneration
from tests import fence
from tools.harness import Simulator, WorkerPools, purge_lanes, worker_env
from tools.simulator import SimulatorServer, start_in_thread
from weather import dbfunctions, dispatch, refresh


def require(missing: str | None, what: str) -> None:
    """Skip the test when a real part it needs is `missing` (why), but fail it in CI: that run is the proof."""
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs {what}, but: {missing}")
        pytest.skip(f"{what} cannot run here: {missing}")


def pytest_configure(config: pytest.Config) -> None:
    """Markers are enforced: the fence fails a test that reaches a service or a process its markers do not admit."""
    fence.install()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    fence.enter(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test that went through the fence even where its own code caught the refusal."""
    result = yield
    if fence.FENCE.violations:
        raise pytest.fail.Exception("\n".join(fence.FENCE.violations), pytrace=False)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Session fixtures (the pools, the simulator) end in whichever test runs last.
    fence.leave()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Database tests are `integration` (before `-m` selects); tests that need RabbitMQ 4 skip on another generation."""
    fence.mark_database_tests(items)
    if settings.RABBITMQ_GENERATION is BrokerGeneration.RABBITMQ_4:
        return
    skip = pytest.mark.skip(reason="needs RabbitMQ 4: scripts/test runs it in its RabbitMQ 4 pass")
    for item in items:
        # The marker, not a keyword: "rabbitmq4" is also the id of the compose suite's parameters.
        if item.get_closest_marker("rabbitmq4"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatorServer]:
    """One simulator for the session, on an ephemeral loopback port."""
    server = start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(simulator_server: SimulatorServer, settings) -> Iterator[Simulator]:
    """The simulator, reset, and this process's provider client pointed at it."""
    settings.WEATHER_API_URL = simulator_server.url
    settings.WEATHER_READ_TIMEOUT = 1.5
    refresh.weather_service.cache_clear()
    handle = Simulator(simulator_server.url)
    handle.reset()
    yield handle
    handle.reset()
    refresh.weather_service.cache_clear()


# Slots per pool in tests: small, so a test can fill a pool on purpose.
POOL_SLOTS = {"interactive": 2, "bulk": 2, "maintenance": 1}


@pytest.fixture(scope="session")
def pools(django_db_setup, django_db_blocker, simulator_server, tmp_path_factory) -> Iterator[WorkerPools]:
    """The pools as real processes through the launcher, on the test database."""
    with django_db_blocker.unblock():
        database_name = connection.settings_dict["NAME"]
    purge_lanes()
    manager = WorkerPools(worker_env(database_name, simulator_server.url), tmp_path_factory.mktemp("workers"),
                          slots=POOL_SLOTS)
    try:
        manager.start_all(POOL_SLOTS)
        yield manager
    finally:
        manager.stop_all()


@pytest.fixture
def live(pools: WorkerPools, sim: Simulator, transactional_db) -> WorkerPools:
    """Everything a test with real workers needs: pools, a reset simulator, committed data."""
    return pools


@pytest.fixture
def no_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails any request that tries to send a task: bad input must never reach the broker.

    The AssertionError is raised inside the view; dispatch.publishing() only turns broker errors
    into 503s, and the test client re-raises whatever a view raises, so the test fails with it.
    """

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"bad input tried to publish: {args!r:.200}")

    monkeypatch.setattr(Celery, "send_task", refuse)
    monkeypatch.setattr(Producer, "publish", refuse)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Task ids of the fetches the refresh endpoint publishes, recorded instead of sent."""
    sent: list[str] = []

    def record(*args: object, task_id: str, **kwargs: object) -> None:
        sent.append(task_id)

    monkeypatch.setattr(dispatch.fetch_weather_for_city, "apply_async", record)
    return sent


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """pytest-django's live server, but static files go through the app's own middleware (WhiteNoise).

    Its default handler serves /static/ from the finders, which know no hashed
    names, and would stand in for what production serves: here nothing does.
    """
    real = staticfiles_handlers.StaticFilesHandler
    staticfiles_handlers.StaticFilesHandler = lambda application: application
    try:
        server = LiveServer("localhost")
    finally:
        staticfiles_handlers.StaticFilesHandler = real
    yield server
    server.stop()


@pytest.fixture(params=["database function", "ORM"])
def implementation(request, monkeypatch) -> str:
    """A locked write by migration 0013's one-round-trip function, or by the ORM's steps (SQLite's path)."""
    if request.param == "ORM":
        monkeypatch.setattr(dbfunctions, "VENDORS", frozenset())
    return request.param
