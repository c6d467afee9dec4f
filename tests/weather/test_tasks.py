"""Tasks run by real Celery workers consuming from RabbitMQ, on the test PostgreSQL database."""

import json
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE
from tests.factories import make_cities, make_city
from tools.harness import queue_depth, wait_for
from weather.apikeys import issue_key
from weather.models import DailySummary, Effect, PendingFetch, RefreshRun, TaskAttempt, WeatherData
from weather.sharedmetrics import shared_samples
from weather.tasks import cleanup_old_weather_data, fetch_weather_for_city, update_all_weather_data

pytestmark = pytest.mark.integration


def refresh_and_wait(client: Client, city_id: int, until: tuple[str, ...] = ("SUCCESS", "FAILURE")) -> dict:
    response = client.post(f"/api/cities/{city_id}/refresh")
    assert response.status_code == 202, response.content
    status_url = response.json()["status_url"]
    return wait_for(
        lambda: (body := client.get(status_url).json())["state"] in until and body,
        timeout=30, what=f"task to reach {until}",
    )


@pytest.mark.generations
def test_refresh_through_the_api_stores_a_reading(live, sim):
    city = make_city("Paris", 48.8566, 2.3522)
    body = refresh_and_wait(Client(), city.pk)
    assert body["state"] == "SUCCESS"
    reading = WeatherData.objects.get(city=city)
    assert body["result"]["temperature"] == reading.temperature
    assert body["date_started"] <= body["date_done"]
    ran = datetime.fromisoformat(body["date_done"]) - datetime.fromisoformat(body["date_started"])
    assert body["run_seconds"] == round(ran.total_seconds(), 3), "the run time, from the worker's start to its result"
    assert sim.stats()["requests"] == 1


def _connections_opened(pool: str) -> float:
    """Database connections the pool's processes have opened so far (counted as each one opens)."""
    return sum(sample.value for _, sample in shared_samples("f_brain_database_connections")
               if sample.labels["pool"] == pool and sample.name.endswith("_total"))


def test_a_worker_child_keeps_its_database_connection_between_tasks(live, sim):
    # Opening a connection was a tenth of a click's own time (bench/click_profile.py):
    # ten fetches in a row must not open ten connections (Celery closes them around each task by default).
    cities = make_cities(10)
    before = _connections_opened("interactive")
    for city in cities:
        assert fetch_weather_for_city.delay(city.pk).get(timeout=30)["city_id"] == city.pk
    assert _connections_opened("interactive") - before < 5


@pytest.mark.generations
def test_transient_fault_is_retried_then_succeeds(live, sim):
    city = make_city()
    # A 5xx, a body cut short on the way, a 429: each a passing fault, retried.
    sim.script("error", "malformed", "rate_limit")
    sim.configure(retry_after_s=0.3)
    body = refresh_and_wait(Client(), city.pk)
    assert body["state"] == "SUCCESS"
    assert sim.stats()["served"] == {"error": 1, "malformed": 1, "rate_limit": 1, "ok": 1}
    assert WeatherData.objects.filter(city=city).count() == 1


def test_the_status_endpoint_reports_each_state_a_fetch_goes_through(live, sim):
    # Slow answers show STARTED; a 429 asking for 2 s shows RETRY while the fetch waits.
    city = make_city()
    sim.configure(latency_ms=800, retry_after_s=2)
    sim.script("rate_limit")
    client = Client()
    status_url = client.post(f"/api/cities/{city.pk}/refresh").json()["status_url"]
    seen: list[str] = []

    def finished() -> bool:
        body = client.get(status_url).json()
        if not seen or seen[-1] != body["state"]:
            seen.append(body["state"])
        return body["state"] in ("SUCCESS", "FAILURE")

    wait_for(finished, timeout=30, interval=0.1, what="the fetch to finish")
    assert seen[-1] == "SUCCESS", seen
    assert {"STARTED", "RETRY"} <= set(seen), seen
    assert seen.index("STARTED") < seen.index("RETRY"), seen


def test_retries_past_the_crash_cap_are_not_counted_as_crashes(live, sim):
    # Three transient faults use the fetch's three retries; with the default cap of
    # three crashes, counting each retry as a crash would dead-letter the last one.
    assert settings.TASK_MAX_CRASHES == 3
    assert fetch_weather_for_city.max_retries == 3
    city = make_city()
    dead_before = queue_depth(DEAD_LETTER_QUEUE.name)
    sim.script("error", "error", "error")
    body = refresh_and_wait(Client(), city.pk)
    assert body["state"] == "SUCCESS", body
    assert sim.stats()["served"] == {"error": 3, "ok": 1}
    assert queue_depth(DEAD_LETTER_QUEUE.name) == dead_before
    assert not TaskAttempt.objects.filter(task_id=body["task_id"]).exists(), "an ended message is forgotten"


def test_permanent_fault_fails_readably_without_a_row(live, sim):
    city = make_city()
    sim.script("bad_value")
    body = refresh_and_wait(Client(), city.pk)
    assert body["state"] == "FAILURE"
    assert "InvalidReadingError" in body["error"]
    assert "outside the physical range" in body["error"]
    assert sim.stats()["requests"] == 1, "a permanent error is not retried"
    assert not WeatherData.objects.filter(city=city).exists()


def test_a_provider_failure_shows_our_message_not_the_providers_text(live, sim):
    city = make_city()
    dead_before = queue_depth(DEAD_LETTER_QUEUE.name)
    sim.script(*["error"] * (fetch_weather_for_city.max_retries + 1))
    body = refresh_and_wait(Client(), city.pk)
    assert body["state"] == "FAILURE"
    assert body["error"] == "TransientProviderError: provider error (500)"
    assert "injected" not in json.dumps(body), "the provider's own words stay in the worker's log"
    # Retries outlasted by a passing fault: declined (the person has the answer), not dead-lettered.
    assert queue_depth(DEAD_LETTER_QUEUE.name) == dead_before
    assert not PendingFetch.objects.filter(city=city).exists()


def test_an_expired_message_is_discarded_by_the_worker_not_run(live, sim):
    # A periodic refresh whose expiry passed while it waited (its pool was down, say): the next slot covers it.
    make_cities(3)
    expired = update_all_weather_data.apply_async(expires=timezone.now() - timedelta(seconds=1))
    wait_for(lambda: TaskResult.objects.filter(task_id=expired.id, status="REVOKED").exists(), timeout=30,
             what="the worker to discard the expired message")
    assert not RefreshRun.objects.exists(), "not run"
    assert sim.stats()["requests"] == 0
    assert not Effect.objects.exists()
    assert queue_depth("bulk") == 0, "discarded, not left on the queue"
    # The same message with time left runs on the same pool.
    summary = update_all_weather_data.apply_async(expires=timezone.now() + timedelta(minutes=5)).get(timeout=30)
    assert RefreshRun.objects.get().pk == summary["run_id"]


@pytest.mark.generations
def test_a_message_that_expires_while_its_pool_is_down_is_discarded_not_dead_lettered(live, sim):
    # Lanes dead-letter whatever the broker gives up on; a broker TTL would make a stale periodic refresh a dead letter.
    make_cities(2)
    dead_before = queue_depth(DEAD_LETTER_QUEUE.name)
    live.stop("bulk")
    try:
        expires = timezone.now() + timedelta(seconds=1)
        stale = update_all_weather_data.apply_async(expires=expires)
        wait_for(lambda: timezone.now() > expires, timeout=10, what="the message's expiry to pass")
    finally:
        live.start("bulk")
    wait_for(lambda: TaskResult.objects.filter(task_id=stale.id, status="REVOKED").exists(), timeout=30,
             what="the returning pool to discard the expired message")
    assert queue_depth(DEAD_LETTER_QUEUE.name) == dead_before, "expired is not dead"
    assert not RefreshRun.objects.exists(), "not run"
    assert sim.stats()["requests"] == 0


def test_city_deleted_after_enqueue_fails_with_a_clear_error(live, sim):
    city = make_city()
    city_id = city.pk
    client = Client()
    live.stop("interactive")
    try:
        response = client.post(f"/api/cities/{city.pk}/refresh")
        city.delete()
    finally:
        live.start("interactive")
    body = wait_for(lambda: (b := client.get(response.json()["status_url"]).json())["state"] == "FAILURE" and b,
                    timeout=30, what="failure")
    assert f"city {city_id} does not exist" in body["error"]


def test_cleanup_stops_before_its_soft_limit_and_the_next_run_finishes(live, settings):
    city = make_city()
    expired = timezone.now() - timedelta(days=settings.WEATHER_RETENTION_DAYS, hours=1)
    total = 30_000
    WeatherData.objects.bulk_create(
        WeatherData(city=city, temperature=1, humidity=50, pressure=1000, observed_at=expired - timedelta(minutes=i))
        for i in range(total))
    WeatherData.objects.create(city=city, temperature=1, humidity=50, pressure=1000, observed_at=timezone.now())
    # Batches of 20 under a 1 s soft limit: far more work than one run may do.
    live.start("maintenance", extra_env={"WEATHER_CLEANUP_BATCH_SIZE": "20"}, soft_time_limit=1, time_limit=3)
    try:
        first = cleanup_old_weather_data.delay().get(timeout=30)
    finally:
        live.start("maintenance")
    # It stopped itself between batches, before the soft limit could cut one short.
    assert (first["finished"], first["stopped"]) == (False, "time budget")
    assert 0 < first["readings_deleted"] < total
    # What it reports is exactly what it committed; the next run deletes the rest.
    left = total - first["readings_deleted"]
    assert WeatherData.objects.count() == left + 1
    second = cleanup_old_weather_data.delay().get(timeout=60)
    assert (second["finished"], second["readings_deleted"]) == (True, left)
    assert WeatherData.objects.count() == 1


def test_cleanup_deletes_exactly_the_rows_past_retention(live, settings):
    city = make_city()
    now = timezone.now()
    keep_edge = now - timedelta(days=settings.WEATHER_RETENTION_DAYS) + timedelta(minutes=5)
    old = [now - timedelta(days=settings.WEATHER_RETENTION_DAYS, minutes=m) for m in (5, 60, 60 * 24 * 10)]
    for observed in [*old, keep_edge, now]:
        WeatherData.objects.create(city=city, temperature=1, humidity=50, pressure=1000, observed_at=observed)
    result = cleanup_old_weather_data.delay().get(timeout=30)
    assert result["readings_deleted"] == 3
    assert result["finished"] is True
    assert sorted(WeatherData.objects.values_list("observed_at", flat=True)) == [keep_edge, now]


def test_refresh_all_uses_batch_requests(live, sim, settings):
    cities = make_cities(25)
    summary = update_all_weather_data.delay().get(timeout=30)
    assert summary["cities"] == 25
    wait_for(lambda: WeatherData.objects.count() == 25, timeout=30, what="25 readings")
    stats = sim.stats()
    # One request per provider batch, never one per city.
    expected_batches = -(-25 // settings.WEATHER_BATCH_SIZE)
    assert (stats["requests"], stats["locations"]) == (expected_batches, 25)
    assert set(WeatherData.objects.values_list("city_id", flat=True)) == {c.pk for c in cities}


def test_etl_chain_writes_the_daily_summary(live):
    city = make_city()
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    for hours, temperature in ((0, 10.0), (1, 14.0), (2, 12.0)):
        WeatherData.objects.create(city=city, temperature=temperature, humidity=50, pressure=1000,
                                   observed_at=now + timedelta(hours=hours))
    client = Client(headers={"X-API-Key": issue_key("etl test")[1]})
    url = f"/api/etl/daily-summary?day={now.date().isoformat()}"
    response = client.post(url)
    assert response.status_code == 202
    body = wait_for(lambda: (b := client.get(response.json()["status_url"]).json())["state"] == "SUCCESS" and b,
                    timeout=30, what="chain to finish")
    # The day's chain has ended (its last step's result says so): a new start runs a new chain.
    again = client.post(url).json()
    assert (again["deduplicated"], again["task_id"] != response.json()["task_id"]) == (False, True)
    assert body["result"] == {"day": now.date().isoformat(), "cities": 1}
    summary = DailySummary.objects.get(city=city)
    assert (summary.min_temperature, summary.max_temperature, summary.mean_temperature,
            summary.readings_count) == (10.0, 14.0, 12.0, 3)
    steps = TaskResult.objects.filter(task_name__startswith="weather.tasks.").values_list("task_name", flat=True)
    assert {"weather.tasks.extract_data", "weather.tasks.transform_data", "weather.tasks.load_data"} <= set(steps)
