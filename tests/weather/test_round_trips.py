"""The writes on a click's path are one statement each, sent outside any transaction: one round trip.

The exceptions are by design: a claim commits with its publish, and a reading with its ledger row.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from celery import current_app
from celery.result import AsyncResult
from django.db import connection
from django.db.models import Sum
from django_celery_results.models import TaskResult

from routing.broker import BrokerUnavailableError
from tests.factories import make_city
from weather.dispatch import _claim, _claim_and_publish, _fetch_is_stale
from weather.guard import record_start
from weather.models import Effect, PendingFetch, QuotaGrant, TaskAttempt, WeatherData
from weather.quota import Consumer, QuotaExceededError, QuotaLimits, reserve
from weather.ratelimit import hit
from weather.refresh import store_readings
from weather.services import Reading
from weather.storage import upsert_readings
from weather.tasks import fetch_weather_for_city, refresh_weather_batch

# Autocommit, as a worker and a web request run: a transaction would add BEGIN and COMMIT.
pytestmark = pytest.mark.django_db(transaction=True)


def statements_of(write: Callable[[], object]) -> list[tuple[str, bool]]:
    """Each round trip `write` sent: its verb (verbs, when it sends several statements at once), and whether it
    ran outside a transaction (autocommit)."""
    sent: list[tuple[str, bool]] = []

    def watch(execute, sql, params, many, context):
        verbs = "+".join(statement.split(None, 1)[0].upper() for statement in sql.split("; "))
        sent.append((verbs, connection.get_autocommit()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        write()
    return sent


ONE_INSERT = [("INSERT", True)]
# A call of one of migration 0013's functions: the lock, the reads and the write inside it.
ONE_CALL = [("SELECT", True)]
# A claim: the task id's claim lock (weather/claims.py) and the insert, sent together.
ONE_CLAIM = [("SELECT+INSERT", True)]


def test_counting_a_start_is_one_statement_whether_first_crash_or_retry():
    assert statements_of(lambda: record_start("t-9", "task", "interactive")) == ONE_INSERT
    assert statements_of(lambda: record_start("t-9", "task", "interactive")) == ONE_INSERT
    assert statements_of(lambda: record_start("t-9", "task", "interactive", retries=1)) == ONE_INSERT


def test_claiming_a_city_is_one_round_trip_and_a_second_claim_joins_the_first():
    city = make_city()
    key = {"city_id": city.pk}
    claims = []
    assert statements_of(lambda: claims.append(_claim(PendingFetch, key, _fetch_is_stale))) == ONE_CLAIM
    joined = _claim(PendingFetch, key, _fetch_is_stale)
    assert (joined.task_id, joined.deduplicated) == (claims[0].task_id, True)
    assert PendingFetch.objects.get(city=city).task_id == claims[0].task_id


def test_a_claim_commits_with_its_publish_in_one_round_trip_or_not_at_all():
    city = make_city()
    key = {"city_id": city.pk}
    published: list[str] = []
    # In a transaction of its own (no savepoint inside it): the publish comes before the claim commits.
    assert statements_of(lambda: _claim_and_publish(PendingFetch, key, _fetch_is_stale, published.append)) == [
        ("SELECT+INSERT", False)]
    assert PendingFetch.objects.get(city=city).task_id == published[0]
    PendingFetch.objects.all().delete()

    def refused(task_id: str) -> None:
        raise BrokerUnavailableError("RabbitMQ is blocking publishers (memory or disk alarm)")

    with pytest.raises(BrokerUnavailableError):
        _claim_and_publish(PendingFetch, key, _fetch_is_stale, refused)
    assert not PendingFetch.objects.exists(), "rolled back with the refused publish: nothing to join"


def test_storing_a_reading_is_one_statement_and_stays_idempotent():
    city = make_city()
    observed = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert statements_of(lambda: upsert_readings([(city.pk, Reading(3.0, 80.0, 1010.0, observed))])) == ONE_INSERT
    upsert_readings([(city.pk, Reading(4.0, 81.0, 1011.0, observed))])
    assert list(WeatherData.objects.filter(city=city).values_list("temperature", "humidity")) == [(4.0, 81.0)]


def test_a_new_reading_and_its_ledger_row_are_two_inserts_in_one_transaction():
    city = make_city()
    observed = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    sent = statements_of(lambda: store_readings([(city.pk, Reading(3.0, 80.0, 1010.0, observed))]))
    # BEGIN and COMMIT are not statements Django sends through execute: the two inserts run inside them.
    assert sent == [("INSERT", False), ("INSERT", False)]
    assert list(Effect.objects.values_list("kind", "applied")) == [("reading", True)]


def test_each_state_in_the_result_backend_is_one_statement_and_keeps_when_the_task_started():
    backend = current_app.backend
    task_id = "00000000-0000-4000-8000-000000000001"
    assert statements_of(lambda: backend.store_result(task_id, {"pid": 1}, "STARTED")) == ONE_INSERT
    started = TaskResult.objects.get(task_id=task_id)
    assert started.status == "STARTED"
    assert started.date_started is not None
    assert statements_of(lambda: backend.store_result(task_id, {"city_id": 7}, "SUCCESS")) == ONE_INSERT
    done = TaskResult.objects.get(task_id=task_id)
    assert (done.status, done.date_started, done.date_created) == ("SUCCESS", started.date_started,
                                                                    started.date_created)
    assert done.date_done >= started.date_done
    assert AsyncResult(task_id).result == {"city_id": 7}


def test_reserving_quota_is_one_call_and_a_refusal_one_more_read():
    limits = QuotaLimits(per_minute=3, per_hour=0, per_day=0, interactive_reserve=0.0)
    reserve(1, Consumer.BULK, limits)  # the first one also creates the lock row
    assert statements_of(lambda: reserve(2, Consumer.BULK, limits)) == ONE_CALL
    refused = []

    def refuse() -> None:
        with pytest.raises(QuotaExceededError, match="per minute is used up \\(3/3") as caught:
            reserve(1, Consumer.BULK, limits)
        refused.append(caught.value)

    # The call, then (the lock released) when the oldest grant leaves the window.
    assert statements_of(refuse) == ONE_CALL * 2
    assert refused[0].wait_seconds() > 55
    assert QuotaGrant.objects.aggregate(total=Sum("locations"))["total"] == 3


def test_counting_a_request_against_the_rate_limit_is_one_call():
    assert statements_of(lambda: hit("client", 1, 60)) == ONE_CALL
    refused = []
    assert statements_of(lambda: refused.append(hit("client", 1, 60))) == ONE_CALL
    assert refused[0] >= 59


def test_ending_a_task_forgets_its_starts_only_where_they_were_counted():
    # Classic lanes count starts in the database; quorum lanes leave it to the broker: nothing to forget.
    # A click's fetch also frees its pending-fetch slot, once the claim has committed (its lock, then the delete).
    record_start("t-1", fetch_weather_for_city.name, "interactive")
    claim = _claim(PendingFetch, {"city_id": make_city().pk}, _fetch_is_stale)
    ending = statements_of(lambda: fetch_weather_for_city.after_return("SUCCESS", None, claim.task_id, (), {}, None))
    assert ending == [("DELETE", True), ("SELECT+DELETE", True)]
    assert not PendingFetch.objects.exists()
    fetch_weather_for_city.after_return("SUCCESS", None, "t-1", (), {}, None)
    assert not TaskAttempt.objects.exists()
    assert statements_of(lambda: refresh_weather_batch.after_return("SUCCESS", None, "t-2", (), {}, None)) == []


def test_a_started_state_the_database_cannot_take_is_logged_and_the_task_goes_on(monkeypatch, caplog):
    # Raised before the body, Celery would take it for an error of its own and dead-letter the message unrun.
    from django.db import OperationalError

    from weather import results

    def database_away(*args, **kwargs):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(results, "upsert", database_away)
    monkeypatch.setattr(results, "ENDING_PATIENCE_S", 0.5)  # how long an ending waits is not what this test is about
    backend = current_app.backend
    task_id = "00000000-0000-4000-8000-000000000002"
    backend.store_result(task_id, {"pid": 1}, "STARTED")
    assert "its STARTED state was not recorded" in caplog.text
    with pytest.raises(OperationalError):
        backend.store_result(task_id, {"city_id": 7}, "SUCCESS")
