"""RabbitMQ's flow control, for real: under a memory alarm a refresh answers 503 at once and frees its claim.

The alarm is raised on the machine's RabbitMQ node by lowering its memory
watermark, and always lifted, whatever happens in the test (tools/rabbit_alarm.py).
"""

from __future__ import annotations

from datetime import date

import pytest
from django.db import OperationalError
from django.db.models import QuerySet
from django.test import Client
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, INTERACTIVE, Priority
from routing.broker import BLOCKED_RECHECK_S, FLOW, BrokerUnavailableError, note_blocked
from tests.factories import make_cities, make_city
from tools.harness import (
    broker_ctl,
    delayed,
    in_flight,
    purge_lanes,
    queue_depth,
    run_summary,
    wait_for,
    wait_for_run,
    within,
)
from tools.rabbit_alarm import memory_alarm
from weather.dispatch import enqueue_city_fetch, enqueue_daily_summary
from weather.models import DailySummaryRun, Effect, PendingFetch, ProviderQuota, RefreshRun, WeatherData
from weather.quota import pause_provider
from weather.tasks import update_all_weather_data

pytestmark = pytest.mark.integration

# A refusal under an alarm comes from what the process knows or one short probe; a publish left to
# wait on the blocked connection would never end. This bounds the wait, with room for a loaded machine.
PUBLISH_REFUSAL_BOUND_S = 5
# A provider pause that outlasts an interactive pool's start under an alarm, on a loaded machine.
QUOTA_PAUSE_S = 15


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("through", ["celery", "django"])
def test_a_refused_publish_leaves_no_claim_even_when_the_database_could_not_release_it(through, settings):
    # Found by the nemesis, a memory alarm and a PostgreSQL restart overlapping: the claim was released by a
    # delete after the refused publish, the delete met the database away, and every request for the city for
    # two minutes joined a fetch that was never queued. The claim now commits with its publish or not at all.
    settings.ENQUEUE_THROUGH = through
    city = make_city()

    def database_away(*args: object, **kwargs: object) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    with memory_alarm(), pytest.MonkeyPatch.context() as patched:
        # This process has met the block already: refused before anything is sent (a publish that met it first
        # may still be taken by the broker once the alarm clears, and would run in the next test).
        note_blocked()
        patched.setattr(QuerySet, "delete", database_away)
        try:
            with pytest.raises(BrokerUnavailableError):
                enqueue_city_fetch(city.pk, Priority.CLICK)
            with pytest.raises(BrokerUnavailableError):
                enqueue_daily_summary(date(2026, 12, 3))
        finally:
            FLOW.blocked = False
    assert not PendingFetch.objects.exists(), "no claim for a request to join"
    assert not DailySummaryRun.objects.exists(), "no day claimed by a chain that does not exist"
    assert not TaskResult.objects.exists(), "no result says a task is waiting"


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
        wait_for(lambda: in_flight(INTERACTIVE.name) + delayed() == 0, timeout=60,
                 what="every copy of the click to end")
    finally:
        sim.configure(error_rate=0.0)
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0, "declined, not dead-lettered"
    assert not PendingFetch.objects.filter(city=city).exists(), "its slot released: asking again is accepted"
    assert Effect.objects.filter(task_id=task_id, applied=True).count() <= 1


def test_a_click_waiting_for_quota_under_an_alarm_is_declined_saying_so_not_dead_lettered(live, sim):
    # Quota that returns within the wait is waited for by a retry: under an alarm that retry cannot be queued
    # either, and the click is declined saying both, not left to the soft limit and the dead letters.
    city = make_city()
    live.stop("interactive")
    purge_lanes()
    task_id = enqueue_city_fetch(city.pk, Priority.CLICK).task_id
    # Long enough to outlast the pool's start; the wait is raised above it, so the click waits rather than refuses.
    pause_provider(QUOTA_PAUSE_S)
    try:
        with memory_alarm():
            live.start("interactive", extra_env={"WEATHER_INTERACTIVE_QUOTA_WAIT_SECONDS": str(2 * QUOTA_PAUSE_S)})
            declined = wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="FAILURE").first(),
                                timeout=60, what="the click to be declined under the alarm")
            assert "quota returns at" in declined.result, declined.result
            assert "its retry could not be queued" in declined.result, declined.result
        # A copy of the retry the broker took after all runs when the pause ends; nothing is dead-lettered.
        wait_for(lambda: in_flight(INTERACTIVE.name) + delayed() == 0, timeout=60 + QUOTA_PAUSE_S,
                 what="every copy of the click to end")
    finally:
        ProviderQuota.objects.update(paused_until=None)
        live.start("interactive")
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0, "declined, not dead-lettered"
    assert not PendingFetch.objects.filter(city=city).exists(), "its slot released: asking again is accepted"

