"""RabbitMQ's flow control, for real: under a memory alarm a refresh answers 503 at once and frees its claim.

The alarm is raised on the machine's RabbitMQ node by lowering its memory
watermark, and always lifted, whatever happens in the test (tools/rabbit_alarm.py).
"""

from __future__ import annotations

import pytest
from django.test import Client
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, INTERACTIVE, Priority
from routing.broker import BLOCKED_RECHECK_S, FLOW
from tests.factories import make_cities, make_city
from tools.harness import (
    broker_ctl,
    in_flight,
    purge_lanes,
    queue_depth,
    run_summary,
    wait_for,
    wait_for_run,
    within,
)
from tools.rabbit_alarm import memory_alarm
from weather.dispatch import enqueue_city_fetch
from weather.models import Effect, PendingFetch, RefreshRun, WeatherData
from weather.tasks import update_all_weather_data

pytestmark = pytest.mark.integration

# A refusal under an alarm comes from what the process knows or one short probe; a publish left to
# wait on the blocked connection would never end. This bounds the wait, with room for a loaded machine.
PUBLISH_REFUSAL_BOUND_S = 5


def test_a_refresh_under_a_memory_alarm_answers_503_at_once_and_frees_its_claim(live, sim):
    city = make_city()
    client = Client()
    assert client.get("/readyz").status_code == 200
    FLOW.blocked = False
    with memory_alarm():
        for attempt in range(3):  # the first meets the block; later ones know of it already
            with within(PUBLISH_REFUSAL_BOUND_S, f"refusal {attempt}"):
                refused = client.post(f"/api/cities/{city.pk}/refresh")
            assert refused.status_code == 503, (attempt, refused.content)
            assert "blocking publishers" in refused.json()["error"]
            assert int(refused["Retry-After"]) >= 1
            assert not PendingFetch.objects.exists(), "the claim is freed, so the next request tries again"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "memory or disk alarm" in ready.json()["checks"]["broker"]
    # The alarm cleared: the same process publishes again, without a restart (once past BLOCKED_RECHECK_S,
    # its memory of the block; until then it refuses at once and frees its claim, so asking again is safe).
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readiness to return")
    wait_for(lambda: client.post(f"/api/cities/{city.pk}/refresh").status_code == 202,
             timeout=BLOCKED_RECHECK_S + 10, interval=0.3, what="a refresh accepted again")
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
            # The fan-out has tried to publish: the broker holds its connection blocked.
            wait_for(lambda: "blocked" in broker_ctl("list_connections", "state").stdout.split(), timeout=60,
                     interval=0.3, what="the worker's publishing connection to be blocked")
            assert not WeatherData.objects.exists(), "no batch can be queued while publishers are blocked"
            assert run_summary(run.pk)["batches_done"] == 0
        summary = wait_for_run(run.pk, timeout=90, what="the refresh to finish once the alarm cleared")
        assert (summary["cities_refreshed"], summary["cities_failed"], summary["batches"]) == (100, 0, 5), summary
        assert WeatherData.objects.count() == 100
        assert result.get(timeout=30)["run_id"] == run.pk
    finally:
        live.start("bulk")


def test_a_click_whose_retry_meets_an_alarm_is_declined_saying_so_not_dead_lettered(live, sim):
    # Its first try meets a provider fault; its retry cannot be queued while RabbitMQ blocks publishers. Waiting
    # for the alarm would spend the pool's soft limit and Celery would dead-letter the click (found by the
    # nemesis): the person is told instead, before the alarm ends, and can ask again.
    city = make_city()
    live.stop("interactive")
    purge_lanes()
    task_id = enqueue_city_fetch(city.pk, Priority.CLICK).task_id
    sim.configure(error_rate=1.0)
    try:
        with memory_alarm():
            live.start("interactive")
            declined = wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="FAILURE").first(),
                                timeout=60, what="the click to be declined under the alarm")
            assert "its retry could not be queued" in declined.result, declined.result
        # A copy of the retry the broker took after all runs to its own end; nothing is dead-lettered.
        sim.configure(error_rate=0.0)
        wait_for(lambda: in_flight(INTERACTIVE.name) == 0, timeout=60, what="every copy of the click to end")
    finally:
        sim.configure(error_rate=0.0)
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0, "declined, not dead-lettered"
    assert not PendingFetch.objects.filter(city=city).exists(), "its slot released: asking again is accepted"
    assert Effect.objects.filter(task_id=task_id, applied=True).count() <= 1

