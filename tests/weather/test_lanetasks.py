"""Django's Tasks API on the real pools and RabbitMQ: priorities, lanes, results and run_after."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_celery_results.models import TaskResult as ResultRow

from routing import DEAD_LETTER_QUEUE, INTERACTIVE, MAINTENANCE, QueueType, deployed
from routing.priorities import message_priority, quorum_class
from tests.factories import make_city
from tools.faults import FROZEN
from tools.harness import purge_lanes, queue_depth, wait_for
from weather import jobs
from weather.apikeys import issue_key
from weather.lanetasks.api import Task, TaskResult, TaskResultStatus, task_enqueued
from weather.lanetasks.backend import enqueue_as
from weather.models import DailySummary, Effect, QuotaGrant, WeatherData

pytestmark = pytest.mark.integration


def _finished(task: Task, result_id: str, timeout: float = 30) -> TaskResult:
    return wait_for(lambda: (result := task.get_result(result_id)).is_finished and result, timeout=timeout,
                    what=f"{task.name} {result_id} to finish")


@pytest.mark.generations
def test_a_backlog_at_several_django_priorities_drains_in_priority_order(live, sim):
    # The default 0 among them: sent as an explicit middle priority, it runs before -50, never after it.
    backlog = [-50, 0, 100, -100, 50, 0, 10, -10, 70]
    cities = [make_city() for _ in range(len(backlog) + 1)]
    live.start("interactive", concurrency=1)
    try:
        # The first fetch holds the only slot while the backlog builds up behind it.
        sim.configure(latency_ms=600)
        jobs.fetch_city.using(priority=-100).enqueue(cities[0].pk)
        wait_for(lambda: sim.stats()["requests"] == 1, timeout=10, what="the first fetch to start")
        by_city = {}
        for city, priority in zip(cities[1:], backlog, strict=True):
            jobs.fetch_city.using(priority=priority).enqueue(city.pk)
            by_city[city.pk] = priority
        assert sim.stats()["requests"] == 1, "the backlog must be queued, not running"
        wait_for(lambda: WeatherData.objects.count() == len(cities), timeout=30, what="every fetch")
    finally:
        sim.configure(latency_ms=0)
        live.start("interactive")
    order = [by_city[c] for c in WeatherData.objects.order_by("fetched_at").values_list("city_id", flat=True)
             if c in by_city]
    assert sorted(order) == sorted(backlog)
    if deployed().queue_type(INTERACTIVE) is QueueType.CLASSIC:
        # RabbitMQ 3.x: strictly by the table's message priority, equal ones in arrival order.
        assert order == sorted(backlog, key=message_priority, reverse=True), order
        assert order.index(0) < order.index(-50)
    else:
        # RabbitMQ 4's quorum lane: the positive ones are high, served about two for every normal one
        # (all four out within the first six); the normal ones in arrival order.
        high = [p for p in order if quorum_class(message_priority(p)) == "high"]
        assert sorted(high) == sorted(p for p in backlog if p > 0)
        assert max(i for i, p in enumerate(order) if p > 0) <= 5, order
        assert [p for p in order if p <= 0] == [p for p in backlog if p <= 0], order


@pytest.mark.generations
def test_each_django_task_runs_on_the_pool_of_its_queue_name(live, sim):
    city = make_city()
    on_lanes = {
        "interactive": jobs.fetch_city.enqueue(city.pk),
        "bulk": jobs.summarize_day.enqueue(),
        "maintenance": jobs.fetch_city.using(queue_name=MAINTENANCE.name).enqueue(city.pk),
    }
    for lane, enqueued in on_lanes.items():
        result = _finished(enqueued.task, enqueued.id)
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        assert result.worker_ids[0].startswith(f"{lane}@"), (lane, result.worker_ids)


def test_a_task_result_follows_the_celery_task_to_success_and_to_failure(live, sim):
    city = make_city()
    enqueued = jobs.fetch_city.enqueue(city.pk)
    assert enqueued.status == TaskResultStatus.READY
    # A result exists from the moment there is an id, before any worker has it.
    assert jobs.fetch_city.get_result(enqueued.id).status in (TaskResultStatus.READY, TaskResultStatus.RUNNING,
                                                              TaskResultStatus.SUCCESSFUL)
    done = _finished(jobs.fetch_city, enqueued.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value["city_id"] == city.pk
    assert done.args == [city.pk]
    assert done.started_at <= done.finished_at
    assert WeatherData.objects.filter(city=city).count() == 1

    missing = 10**9
    failed = _finished(jobs.fetch_city, jobs.fetch_city.enqueue(missing).id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "weather.refresh.UnknownCityError"
    with pytest.raises(ValueError, match="failed"):
        _ = failed.return_value
    # A fetch that can never succeed is dead-lettered like the Celery fetch's: nothing lost, for a person to see.
    wait_for(lambda: queue_depth(DEAD_LETTER_QUEUE.name) >= 1, timeout=30, what="the dead letter")
    purge_lanes()


@pytest.mark.generations
def test_run_after_holds_a_task_until_its_time_on_a_quorum_lane(live, sim):
    assert "bulk" in deployed().quorum_lane_names
    run_after = timezone.now() + timedelta(seconds=3)
    enqueued = jobs.summarize_day.using(run_after=run_after).enqueue()
    done = _finished(jobs.summarize_day, enqueued.id)
    assert done.status == TaskResultStatus.SUCCESSFUL, done.errors
    assert done.started_at >= run_after


def test_run_after_holds_a_fetch_until_its_time_on_the_interactive_lane_whatever_its_queue_type(live, sim):
    # The web knows quorum lanes, so Celery sends every countdown through the delay queues, the classic
    # interactive lane's of RabbitMQ 3.x too: dropped by the broker until every lane was bound to them.
    city = make_city()
    run_after = timezone.now() + timedelta(seconds=3)
    enqueued = jobs.fetch_city.using(run_after=run_after).enqueue(city.pk)
    done = _finished(jobs.fetch_city, enqueued.id)
    assert done.status == TaskResultStatus.SUCCESSFUL, done.errors
    assert done.started_at >= run_after


def test_the_api_enqueues_through_django_s_tasks_api_with_the_same_answers(live, sim, settings):
    settings.ENQUEUE_THROUGH = "django"
    city = make_city()
    client = Client(headers={"X-API-Key": issue_key("django tasks")[1]})
    live.stop("interactive")  # the first fetch still pending when the second request comes
    try:
        first = client.post(f"/api/cities/{city.pk}/refresh")
        joined = client.post(f"/api/cities/{city.pk}/refresh")
    finally:
        live.start("interactive")
    assert first.status_code == joined.status_code == 202
    assert (first.json()["deduplicated"], joined.json()["deduplicated"]) == (False, True)
    assert joined.json()["task_id"] == first.json()["task_id"]
    body = wait_for(lambda: (b := client.get(first.json()["status_url"]).json())["state"] == "SUCCESS" and b,
                    timeout=30, what="the fetch")
    assert body["result"]["city_id"] == city.pk
    # Sent as Django's task, at a click's priority, and followed by Django's API as well.
    assert ResultRow.objects.get(task_id=first.json()["task_id"]).task_name == "weather.jobs.fetch_city"
    assert jobs.fetch_city.get_result(first.json()["task_id"]).status == TaskResultStatus.SUCCESSFUL
    assert client.post("/api/cities/999999999/refresh").status_code == 404

    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    for hours, temperature in ((0, 10.0), (1, 14.0)):
        WeatherData.objects.create(city=city, temperature=temperature, humidity=50, pressure=1000,
                                   observed_at=now + timedelta(hours=hours))
    started = client.post(f"/api/etl/daily-summary?day={now.date().isoformat()}")
    assert started.status_code == 202
    assert started.json()["deduplicated"] is False
    body = wait_for(lambda: (b := client.get(started.json()["status_url"]).json())["state"] == "SUCCESS" and b,
                    timeout=30, what="the summary")
    assert body["result"] == {"day": now.date().isoformat(), "cities": 1}
    # The two readings above and the one the fetch stored, when the simulator's clock is on the same day.
    day_readings = WeatherData.objects.filter(city=city, observed_at__date=now.date()).count()
    assert DailySummary.objects.get(city=city).readings_count == day_readings >= 2
    assert ResultRow.objects.get(task_id=started.json()["task_id"]).task_name == "weather.jobs.summarize_day"


def test_a_django_task_keeps_the_pools_guarantees(live, sim):
    # Published only when its transaction commits, under an id given up front; killed mid-run, delivered again
    # and applied once; refused for quota, declined with the reason rather than dead-lettered.
    city, first, second = make_city(), make_city(), make_city()
    enqueued = []

    def on_enqueued(sender: type, task_result: TaskResult, **kwargs: object) -> None:
        enqueued.append(task_result.id)

    task_enqueued.connect(on_enqueued)
    live.stop("interactive")
    try:
        rolled_back: list[str] = []

        def enqueue_then_fail() -> None:
            with transaction.atomic():
                rolled_back.append(jobs.fetch_city.enqueue(city.pk).id)
                raise RuntimeError("the request failed after its enqueue")

        with pytest.raises(RuntimeError, match="failed after its enqueue"):
            enqueue_then_fail()
        with transaction.atomic(), enqueue_as("given-up-front"):
            kept = jobs.fetch_city.enqueue(city.pk)
            assert enqueued == [], "nothing is announced before the commit"
        assert kept.id == "given-up-front"
        assert enqueued == [kept.id]
        assert queue_depth(INTERACTIVE.name) == 1, "only the committed enqueue was published"
        assert not ResultRow.objects.filter(task_id__in=rolled_back).exists(), "its PENDING row rolled back too"
    except BaseException:
        live.start("interactive")  # the next test's pool
        raise
    finally:
        task_enqueued.disconnect(on_enqueued)

    sim.configure(latency_ms=2000, fixed_time=FROZEN)
    live.start("interactive", concurrency=1)
    try:
        wait_for(lambda: sim.stats()["requests"] == 1, timeout=30, what="the fetch to reach the provider")
        assert live.kill_children("interactive"), "the pool has a child running the fetch"
        sim.configure(latency_ms=0, fixed_time=FROZEN)
        done = _finished(jobs.fetch_city, kept.id)
    finally:
        live.start("interactive")  # the next test's pool, whatever happened here
    assert done.status == TaskResultStatus.SUCCESSFUL, done.errors
    assert sim.stats()["requests"] == 2, "asked again after the kill"
    assert list(Effect.objects.filter(task_id=kept.id).values_list("kind", "applied")) == [("reading", True)]

    QuotaGrant.objects.all().delete()
    live.start("interactive", extra_env={"WEATHER_QUOTA_PER_MINUTE": "1", "WEATHER_QUOTA_PER_HOUR": "0",
                                         "WEATHER_QUOTA_PER_DAY": "0"})
    try:
        assert _finished(jobs.fetch_city, jobs.fetch_city.enqueue(first.pk).id).status == TaskResultStatus.SUCCESSFUL
        refused = _finished(jobs.fetch_city, jobs.fetch_city.enqueue(second.pk).id)
    finally:
        live.start("interactive")
    assert refused.status == TaskResultStatus.FAILED
    assert refused.errors[0].exception_class_path == "weather.quota.QuotaExceededError"
    assert "quota returns at" in refused.errors[0].traceback
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0, "declined, not dead-lettered"
