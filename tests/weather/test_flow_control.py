"""RabbitMQ's flow control, for real: under a memory alarm a refresh answers 503 at once and frees its claim.

The alarm is raised on the machine's RabbitMQ node by lowering its memory
watermark, and always lifted, whatever happens in the test (tools/rabbit_alarm.py).
"""

from __future__ import annotations

import time

import pytest
from django.test import Client

from routing.broker import FLOW
from tests.factories import make_cities, make_city
from tools.harness import purge_lanes, run_summary, wait_for, wait_for_run
from tools.rabbit_alarm import memory_alarm
from weather.models import PendingFetch, RefreshRun, WeatherData
from weather.tasks import update_all_weather_data

pytestmark = pytest.mark.integration


def test_a_refresh_under_a_memory_alarm_answers_503_at_once_and_frees_its_claim(live, sim):
    city = make_city()
    client = Client()
    assert client.get("/readyz").status_code == 200
    FLOW.blocked = False
    with memory_alarm():
        for attempt in range(3):  # the first meets the block; later ones know of it already
            started = time.monotonic()
            refused = client.post(f"/api/cities/{city.pk}/refresh")
            elapsed = time.monotonic() - started
            assert refused.status_code == 503, (attempt, refused.content)
            assert elapsed < 1.0, (attempt, elapsed)
            assert "blocking publishers" in refused.json()["error"]
            assert int(refused["Retry-After"]) >= 1
            assert not PendingFetch.objects.exists(), "the claim is freed, so the next request tries again"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "memory or disk alarm" in ready.json()["checks"]["broker"]
    # The alarm cleared: the same process publishes again, without a restart.
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readiness to return")
    time.sleep(1.1)  # past the recheck interval of the process's memory of the block
    accepted = client.post(f"/api/cities/{city.pk}/refresh")
    assert accepted.status_code == 202, accepted.content
    wait_for(lambda: WeatherData.objects.filter(city=city).exists(), timeout=30, what="the refresh to run")


def test_a_worker_that_publishes_under_an_alarm_waits_for_it_to_clear_and_loses_nothing(live, sim):
    # The bulk fan-out publishes one message a batch: under the alarm those publishes
    # wait in the worker (acks-late, its own message unacknowledged), then go out.
    make_cities(100)
    live.stop("bulk")
    purge_lanes()
    result = update_all_weather_data.delay()
    try:
        with memory_alarm():
            live.start("bulk", extra_env={"WEATHER_BATCH_SIZE": "20"})
            run = wait_for(lambda: RefreshRun.objects.first(), timeout=30, what="the refresh to start its run")
            time.sleep(3)
            assert not WeatherData.objects.exists(), "no batch can be queued while publishers are blocked"
            assert run_summary(run.pk)["batches_done"] == 0
        summary = wait_for_run(run.pk, timeout=90, what="the refresh to finish once the alarm cleared")
        assert (summary["cities_refreshed"], summary["cities_failed"], summary["batches"]) == (100, 0, 5), summary
        assert WeatherData.objects.count() == 100
        assert result.get(timeout=30)["run_id"] == run.pk
    finally:
        live.start("bulk")
