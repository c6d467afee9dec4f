"""Retention cleanup: exactly the expired rows, in bounded batches, resumable."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.factories import make_city
from weather import retention
from weather.models import Effect, QuotaGrant, WeatherData

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(settings):
    city = make_city()
    now = timezone.now()
    expired = now - timedelta(days=settings.WEATHER_RETENTION_DAYS, hours=1)
    fresh = now - timedelta(days=settings.WEATHER_RETENTION_DAYS) + timedelta(hours=1)
    for i in range(7):
        WeatherData.objects.create(city=city, temperature=1, humidity=1, pressure=1000,
                                   observed_at=expired - timedelta(minutes=i))
    for i in range(3):
        WeatherData.objects.create(city=city, temperature=1, humidity=1, pressure=1000,
                                   observed_at=fresh + timedelta(minutes=i))
    for i, age in enumerate((settings.CELERY_RESULT_EXPIRES + timedelta(hours=1), timedelta(hours=1))):
        TaskResult.objects.create(task_id=f"t{i}", status="SUCCESS")
        # date_done is auto_now: set the age afterwards.
        TaskResult.objects.filter(task_id=f"t{i}").update(date_done=now - age)
    QuotaGrant.objects.create(granted_at=now - timedelta(days=3), locations=5, consumer="bulk")
    ledger_kept = timedelta(days=settings.EFFECTS_RETENTION_DAYS)
    for unit, age in (("old", ledger_kept + timedelta(hours=1)), ("new", ledger_kept - timedelta(hours=1))):
        Effect.objects.create(kind="reading", unit=unit, applied=True, recorded_at=now - age)
    return city


def test_cleanup_deletes_exactly_the_expired_rows_in_batches(rows):
    with CaptureQueriesContext(connection) as queries:
        progress = retention.cleanup(batch_size=3)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "weather_weatherdata"')]
    assert len(deletes) == 3  # 7 rows in batches of 3
    assert progress == {**progress, "readings_deleted": 7, "task_results_deleted": 1,
                        "quota_grants_deleted": 1, "effects_deleted": 1, "finished": True}
    assert WeatherData.objects.count() == 3
    assert list(Effect.objects.values_list("unit", flat=True)) == ["new"]
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["t1"]


def test_an_interrupted_cleanup_resumes_where_it_stopped(rows):
    calls = iter([False, False, True])
    progress = retention.cleanup(batch_size=2, should_stop=lambda: next(calls, True))
    assert (progress["readings_deleted"], progress["finished"]) == (4, False)
    assert WeatherData.objects.count() == 6
    progress = retention.cleanup(batch_size=2)
    assert (progress["readings_deleted"], progress["finished"]) == (3, True)
    assert WeatherData.objects.count() == 3


def test_a_pk_range_deletes_only_the_expired_rows_inside_it(settings):
    # Expired and fresh readings interleaved by primary key: every deleted range
    # holds fresh rows that must survive it.
    city = make_city()
    now = timezone.now()
    expired = now - timedelta(days=settings.WEATHER_RETENTION_DAYS, hours=1)
    for i in range(10):
        WeatherData.objects.create(city=city, temperature=i, humidity=1, pressure=1000,
                                   observed_at=(expired if i % 2 == 0 else now) - timedelta(minutes=i))
    progress = retention.cleanup(batch_size=2)
    assert progress["readings_deleted"] == 5
    assert sorted(WeatherData.objects.values_list("temperature", flat=True)) == [1, 3, 5, 7, 9]
