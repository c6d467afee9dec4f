"""How a pool ends: SIGTERM's warm shutdown within the platform's grace, and Celery's own hard time limit.

Each task here is held at a database lock the test owns, so the test decides which task can finish
and when: nothing is timed, and the end of the grace is the platform's kill (WorkerPools.stop).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.factories import make_cities, make_city
from tools.faults import FROZEN
from tools.harness import logged_since, queue_depth, wait_for
from tools.simulator import observation_time
from weather import effects
from weather.models import Effect, RefreshBatch, RefreshRun, WeatherData
from weather.tasks import cleanup_old_weather_data, refresh_weather_batch

pytestmark = pytest.mark.integration

# The platform's stop grace in these tests (compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds):
# short, since what the test holds cannot finish inside any grace.
GRACE_S = 5


def _session() -> psycopg2.extensions.connection:
    """A connection of the test's own, outside Django's, to hold a lock while the workers run."""
    params = connection.get_connection_params()
    return psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})


@contextlib.contextmanager
def held_slot(city_id: int) -> Iterator[psycopg2.extensions.connection]:
    """The city's observation slot inserted and not committed: a batch storing it waits until this rolls back."""
    session = _session()
    try:
        with session.cursor() as cursor:
            cursor.execute("INSERT INTO weather_weatherdata (city_id, temperature, humidity, pressure, observed_at,"
                           " fetched_at) VALUES (%s, 0, 0, 1000, %s, now())", [city_id, observation_time(FROZEN)])
        yield session
    finally:
        session.rollback()
        session.close()


@contextlib.contextmanager
def held_row(table: str, pk: int) -> Iterator[psycopg2.extensions.connection]:
    """One row locked FOR UPDATE: a statement deleting it waits until this rolls back."""
    session = _session()
    try:
        with session.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [pk])
        yield session
    finally:
        session.rollback()
        session.close()


def _waiting_on_locks() -> int:
    """Sessions of the test database waiting on a lock (a task held at what the test holds)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


def _expired_reading() -> WeatherData:
    return WeatherData.objects.create(city=make_city(), temperature=1, humidity=1, pressure=1000,
                                      observed_at=timezone.now() - timedelta(days=400))


def test_sigterm_on_bulk_finishes_the_batch_that_can_and_the_one_cut_off_runs_again(live, sim):
    sim.configure(fixed_time=FROZEN)
    done_in_grace, cut_off = make_cities(2)
    run = RefreshRun.objects.create(batch_size=1, batches_total=2, cities_total=2)
    for index in range(2):
        RefreshBatch.objects.create(run=run, index=index, cities=1)
    try:
        with held_slot(done_in_grace.pk) as first, held_slot(cut_off.pk):
            refresh_weather_batch.delay(run.pk, 0, [done_in_grace.pk])
            refresh_weather_batch.delay(run.pk, 1, [cut_off.pk])
            wait_for(lambda: _waiting_on_locks() == 2, timeout=30, what="both batches to reach their insert")
            worker = live.processes["bulk"]
            worker.send_signal(signal.SIGTERM)  # warm shutdown: no new work, running tasks go on
            first.rollback()
            wait_for(lambda: RefreshBatch.objects.filter(run=run, index=0, status="done").exists(), timeout=30,
                     what="the first batch to finish after SIGTERM")
            assert worker.poll() is None, "the worker waits for the batch still running"
            live.stop("bulk", sig=signal.SIGTERM, timeout=GRACE_S)  # the grace runs out: the platform kills it
        assert RefreshBatch.objects.get(run=run, index=1).status == "pending"
    finally:
        live.start("bulk")
    # The batch cut off was never acknowledged: it comes back to the next worker and finishes.
    wait_for(lambda: RefreshBatch.objects.filter(run=run, index=1, status="done").exists(), timeout=60,
             what="the cut-off batch on the next worker")
    batches = Effect.objects.filter(kind="batch").order_by("unit").values_list("unit", "applied")
    assert list(batches) == [(f"{run.pk}/0", True), (f"{run.pk}/1", True)], "each once; the finished one not again"
    assert effects.applied_twice() == {}
    assert queue_depth("bulk") == 0


def test_sigterm_on_maintenance_lets_the_cleanup_finish_then_the_worker_exits_by_itself(live):
    expired = _expired_reading()
    try:
        with held_row("weather_weatherdata", expired.pk) as lock:
            result = cleanup_old_weather_data.delay()
            wait_for(lambda: _waiting_on_locks() == 1, timeout=30, what="the cleanup to reach the locked row")
            worker = live.processes["maintenance"]
            worker.send_signal(signal.SIGTERM)
            lock.rollback()
            assert worker.wait(timeout=GRACE_S) == 0, "it finished its cleanup and exited inside the grace"
        assert TaskResult.objects.get(task_id=result.id).status == "SUCCESS"
        assert not WeatherData.objects.filter(pk=expired.pk).exists()
    finally:
        live.start("maintenance")
    assert queue_depth("maintenance") == 0, "acknowledged: nothing comes back"


def test_sigterm_on_maintenance_past_the_grace_leaves_the_cleanup_to_the_next_worker(live):
    expired = _expired_reading()
    try:
        with held_row("weather_weatherdata", expired.pk):
            result = cleanup_old_weather_data.delay()
            wait_for(lambda: _waiting_on_locks() == 1, timeout=30, what="the cleanup to reach the locked row")
            live.stop("maintenance", sig=signal.SIGTERM, timeout=GRACE_S)
    finally:
        live.start("maintenance")
    wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(), timeout=60,
             what="the cleanup to run again on the next worker")
    assert not WeatherData.objects.filter(pk=expired.pk).exists()


def test_the_hard_time_limit_kills_a_cleanup_stuck_past_its_soft_limit_and_the_message_runs_again(live):
    # Blocked inside the database client, the cleanup cannot see its soft limit (the signal is handled only
    # when the call returns): Celery's hard limit ends the child, the pool replaces it, the message comes back.
    live.start("maintenance", soft_time_limit=2, time_limit=4)
    log = live.log_dir / "maintenance.log"
    logged_before = log.stat().st_size
    expired = _expired_reading()
    try:
        with held_row("weather_weatherdata", expired.pk):
            result = cleanup_old_weather_data.delay()
            wait_for(lambda: "Hard time limit (4s) exceeded" in logged_since(log, logged_before),
                     timeout=60, interval=0.2, what="Celery's hard time limit to end the cleanup")
            assert live.alive("maintenance"), "the pool lives on: only the child was ended"
        wait_for(lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(), timeout=60,
                 what="the cleanup to run again once nothing holds it")
        assert not WeatherData.objects.filter(pk=expired.pk).exists()
    finally:
        live.start("maintenance")
