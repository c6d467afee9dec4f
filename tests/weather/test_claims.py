"""What a message holds is released at its ending: a fetch that ends before its claim commits, or while the database
restarts, still frees the city and forgets its counted starts."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection, connections
from django_celery_results.models import TaskResult

from routing import INTERACTIVE, deployed
from tests.factories import make_city
from tools.harness import wait_for
from weather import claims, guard, patience
from weather.dispatch import _claim, _claim_and_publish, _fetch_is_stale
from weather.models import PendingFetch, TaskAttempt
from weather.tasks import fetch_weather_for_city

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _waiting_for_a_claim_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                       "AND classid = %s", [claims.CLAIM_LOCK_SPACE])
        return cursor.fetchone()[0]


def test_a_fetch_that_ends_before_its_claim_commits_still_releases_it():
    # The message goes out inside the claim's transaction; a worker may run the whole fetch and
    # release its claim before the web process commits. Its release must wait for that commit.
    city = make_city()
    released: list[int] = []
    workers: list[threading.Thread] = []

    def worker_ends_at_once(task_id: str) -> None:
        def release() -> None:
            try:
                released.append(claims.release(PendingFetch, task_id, time.monotonic() + 15))
            finally:
                connections.close_all()

        workers.append(threading.Thread(target=release))
        workers[0].start()
        wait_for(_waiting_for_a_claim_lock, timeout=10, what="the release to wait for the claim's commit")

    enqueued = _claim_and_publish(PendingFetch, {"city_id": city.pk}, _fetch_is_stale, worker_ends_at_once)
    workers[0].join(timeout=10)
    assert released == [1], "the release deleted the claim once it had committed"
    assert not PendingFetch.objects.filter(task_id=enqueued.task_id).exists()


def test_a_claim_whose_fetch_has_ended_is_replaced_by_the_next_request():
    # A worker that could not release its claim (the database away longer than its patience) leaves
    # the row; the next click must start a fetch, not join one that has already ended.
    city = make_city()
    key = {"city_id": city.pk}
    first = _claim(PendingFetch, key, _fetch_is_stale)
    assert _claim(PendingFetch, key, _fetch_is_stale).deduplicated, "a running fetch is joined"
    TaskResult.objects.create(task_id=first.task_id, status="SUCCESS")
    second = _claim(PendingFetch, key, _fetch_is_stale)
    assert not second.deduplicated
    assert second.task_id != first.task_id
    assert PendingFetch.objects.get(city=city).task_id == second.task_id


def test_a_release_waits_out_a_database_away_within_its_patience(monkeypatch):
    city = make_city()
    claimed = _claim(PendingFetch, {"city_id": city.pk}, _fetch_is_stale)
    real_release_once = claims._release_once
    failures = iter([OperationalError("the database system is starting up")] * 2)
    monkeypatch.setattr(patience, "RETRY_EVERY_S", 0.01)

    def away_twice(model, task_id):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_release_once(model, task_id)

    monkeypatch.setattr(claims, "_release_once", away_twice)
    assert claims.release(PendingFetch, claimed.task_id, time.monotonic() + 15) == 1
    assert not PendingFetch.objects.exists()

    failures = iter([OperationalError("the database system is shutting down")] * 1000)
    with pytest.raises(OperationalError):
        claims.release(PendingFetch, "any", deadline=time.monotonic() + 0.05)


def test_an_ending_while_the_database_restarts_still_forgets_the_counted_starts(monkeypatch):
    # A row left behind would count a crash that never happened (the nemesis's seed 3 found one).
    city = make_city()
    claimed = _claim(PendingFetch, {"city_id": city.pk}, _fetch_is_stale)
    assert INTERACTIVE.name not in deployed().quorum_lane_names, "a classic lane counts starts in the database"
    assert guard.record_start(claimed.task_id, fetch_weather_for_city.name, INTERACTIVE.name) == 1
    monkeypatch.setattr(patience, "RETRY_EVERY_S", 0.01)
    real_record_end = guard.record_end
    failures = iter([OperationalError("the database system is shutting down")] * 3)

    def away_three_times(task_id):
        if (failure := next(failures, None)) is not None:
            raise failure
        real_record_end(task_id)

    monkeypatch.setattr(guard, "record_end", away_three_times)
    fetch_weather_for_city.after_return("SUCCESS", None, claimed.task_id, (city.pk,), {}, None)
    assert not TaskAttempt.objects.exists()
    assert not PendingFetch.objects.exists()
