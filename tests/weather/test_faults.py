"""Fault tests with real processes: workers killed, broker and database restarted, a flaky provider.

Each test stops by itself within its timeouts and targets loopback only.
"""

import json
from io import StringIO

import pytest
from celery import current_app as app
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import Client
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, DELIVERY_LIMIT, INTERACTIVE, LANE_NAMES, Priority, deployed
from tests.factories import make_cities, make_city
from tools.faults import (
    BATCHES_OF_20,
    FLAKY_PROVIDER,
    FROZEN,
    KILL_ENV,
    applied_twice,
    broker_stopped,
    busiest_minute,
    database_stopped,
    kill_mid_refresh,
)
from tools.harness import logged_since, purge_lanes, queue_consumers, queue_depth, wait_for, wait_for_run, within
from weather import effects
from weather.apikeys import issue_key
from weather.dispatch import enqueue_city_fetch
from weather.models import Effect, PendingFetch, QuotaGrant, RefreshBatch, RefreshRun, WeatherData
from weather.tasks import cleanup_old_weather_data, transform_data, update_all_weather_data

pytestmark = pytest.mark.integration



@pytest.fixture
def faults(live, sim):
    """The live pools, given back to the next test as they were, with empty lanes."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(DEAD_LETTER_QUEUE.name)
    yield live
    sim.reset()
    purge_lanes()
    live.start_all(["interactive", "bulk", *([] if live.alive("maintenance") else ["maintenance"])])


def _start_refresh(cities: int, live, min_done: int = 3) -> RefreshRun:
    make_cities(cities)
    live.start("bulk", extra_env=KILL_ENV)
    summary = update_all_weather_data.delay().get(timeout=30)
    run = RefreshRun.objects.get(pk=summary["run_id"])
    wait_for(lambda: run.summary()["batches_done"] >= min_done, timeout=60, what="the refresh to be under way")
    return run



@pytest.mark.generations
def test_a_message_that_keeps_killing_its_worker_ends_in_dead_letter_and_can_be_replayed(faults, sim):
    faults.start("interactive", extra_env={"TASK_MAX_CRASHES": "3"}, concurrency=1)
    # RabbitMQ 3.x: a classic lane, whose starts the database guard counts to TASK_MAX_CRASHES. RabbitMQ 4: a
    # quorum lane, whose deliveries the broker counts to its delivery limit.
    quorum = INTERACTIVE.name in deployed().quorum_lane_names
    kills = DELIVERY_LIMIT if quorum else 3
    city = make_city()
    sim.configure(latency_ms=3000)
    task_id = enqueue_city_fetch(city.pk, Priority.CLICK).task_id
    for crash in range(kills):
        wait_for(lambda n=crash: sim.stats()["requests"] == n + 1, timeout=30, what=f"start {crash + 1}")
        assert faults.kill_children("interactive"), "the pool has a child running the fetch"
    wait_for(lambda: queue_depth(DEAD_LETTER_QUEUE.name) == 1, timeout=30, what="the dead letter")
    assert sim.stats()["requests"] == kills, "the last delivery is refused before the provider is asked"

    out = StringIO()
    call_command("deadletters", "list", "--json", stdout=out)
    (letter,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (letter["task_id"], letter["lane"], letter["task"]) == (
        task_id, "interactive", "weather.tasks.fetch_weather_for_city")
    assert f"crashed its worker {kills} times" in letter["why"], letter["why"]
    assert json.loads(letter["args"])["args"] == [city.pk]
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 1, "listing leaves the message in place"

    sim.configure(latency_ms=0, fixed_time=FROZEN)
    call_command("deadletters", "replay", task_id, stdout=StringIO())
    wait_for(lambda: WeatherData.objects.filter(city=city).exists(), timeout=30, what="the replayed fetch")
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0
    # The same letter replayed again (a second operator, a retried script): a clear error, nothing sent.
    with pytest.raises(CommandError, match=f"not found in the dead-letter queue: {task_id}"):
        call_command("deadletters", "replay", task_id, stdout=StringIO())
    assert wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists(), timeout=30,
                    what="the replayed fetch's result")
    assert sim.stats()["requests"] == kills + 1, "the replay ran once"
    assert list(Effect.objects.filter(task_id=task_id).values_list("kind", "applied")) == [("reading", True)]


def test_killing_children_and_whole_workers_mid_refresh_loses_and_duplicates_nothing(faults, sim):
    sim.configure(latency_ms=400, fixed_time=FROZEN)
    cities = 3000
    run = _start_refresh(cities, faults)
    kills = kill_mid_refresh(faults, run.pk, 10, children=True, workers=True)
    assert min(kills.values()) >= 10, f"the refresh ended after only {kills}: give it more work"
    summary = wait_for_run(run.pk)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (cities, 0)
    assert RefreshBatch.objects.filter(run=run, status="done").count() == summary["batches"]
    # The kills cut batches short: they were asked of the provider again...
    assert QuotaGrant.objects.count() > summary["batches"], "no kill landed mid-batch"
    # ...and still each city's one observation was applied once (the ledger, keyed by the provider's slot).
    assert WeatherData.objects.count() == cities
    readings = {t.kind: t for t in effects.tally()}["reading"]
    assert (readings.units, readings.applied, readings.applied_twice) == (cities, cities, 0)
    assert applied_twice() == 0
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0
    assert queue_depth("bulk") == 0


@pytest.mark.generations
def test_a_broker_restart_mid_refresh_recovers_and_the_api_answers_503_meanwhile(faults, sim):
    sim.configure(latency_ms=300, fixed_time=FROZEN)
    run = _start_refresh(1000, faults)
    person = make_city()
    client = Client()
    _, key = issue_key("fault test")
    requests = {
        "API refresh": lambda: client.post(f"/api/cities/{person.pk}/refresh"),
        "dashboard refresh": lambda: client.post(f"/cities/{person.pk}/refresh"),
        "daily summary": lambda: client.post("/api/etl/daily-summary", headers={"X-API-Key": key}),
    }
    answers = {}
    logs = {lane: faults.log_dir / f"{lane}.log" for lane in LANE_NAMES}
    logged_before = {lane: log.stat().st_size for lane, log in logs.items()}
    with broker_stopped():
        assert not run.summary()["finished"], "the broker must go away mid-refresh"
        for name, request in requests.items():
            with within(5, f"the {name}'s refusal"):
                answers[name] = request()
        not_ready = client.get("/readyz")
        # The broker stays away until every pool has seen it go (each says so in its log).
        for lane, log in logs.items():
            wait_for(lambda lane=lane, log=log: "Connection to broker lost" in logged_since(log, logged_before[lane]),
                     timeout=60, interval=0.2, what=f"the {lane} pool to notice the broker gone")
    for name, response in answers.items():
        assert response.status_code == 503, name
        assert "unavailable" in response.json()["error"], name
    assert not_ready.status_code == 503
    assert not PendingFetch.objects.filter(city=person).exists(), "a refused fetch holds no slot"
    for lane in LANE_NAMES:
        wait_for(lambda lane=lane: queue_consumers(lane) >= 1, timeout=90, what=f"{lane} to reconnect")
    summary = wait_for_run(run.pk)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (1000, 0)
    assert WeatherData.objects.filter(city__name__startswith="Bulk").count() == 1000
    accepted = client.post(f"/api/cities/{person.pk}/refresh")
    assert accepted.status_code == 202
    wait_for(lambda: WeatherData.objects.filter(city=person).exists(), timeout=30, what="a fetch after recovery")


def test_a_database_outage_mid_refresh_is_retried_without_a_crash_loop(faults, sim):
    sim.configure(latency_ms=300, fixed_time=FROZEN)
    run = _start_refresh(1000, faults)
    log = faults.log_dir / "bulk.log"
    logged_before = log.stat().st_size
    with database_stopped():
        # Batches in flight meet the outage, and their retries back off within their budget.
        wait_for(lambda: "retry: Retry in" in logged_since(log, logged_before), timeout=60, interval=0.2,
                 what="a batch to meet the outage and be retried")
    summary = wait_for_run(run.pk)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (1000, 0)
    assert WeatherData.objects.count() == 1000
    during = logged_since(log, logged_before)
    # The pool rode it out: no child died, and every lane still has its consumer.
    assert "WorkerLostError" not in during
    assert "exited with" not in during
    for pool in LANE_NAMES:
        assert faults.alive(pool), f"pool {pool} died"
        assert queue_consumers(pool) >= 1
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0


def test_work_that_starts_while_the_database_is_away_is_retried_not_dead_lettered(faults, sim):
    # A refresh's start and the cleanup do not retry database trouble in their bodies; the task base does.
    make_cities(3)
    logs = {lane: faults.log_dir / f"{lane}.log" for lane in ("bulk", "maintenance")}
    logged_before = {lane: log.stat().st_size for lane, log in logs.items()}
    with database_stopped():
        sent = {"bulk": update_all_weather_data.apply_async(), "maintenance": cleanup_old_weather_data.apply_async()}
        for lane, result in sent.items():
            wait_for(lambda lane=lane, result=result: f"[{result.id}] retry: Retry in"
                     in logged_since(logs[lane], logged_before[lane]),
                     timeout=60, interval=0.2, what=f"the {lane} task to meet the outage and be retried")
    summary = sent["bulk"].get(timeout=120)
    assert wait_for_run(summary["run_id"])["cities_refreshed"] == 3
    assert sent["maintenance"].get(timeout=120)["finished"] is True
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0


def test_a_task_that_ends_while_the_database_is_away_records_its_result_once_it_returns(faults, sim):
    # transform_data touches no table: its work is done while PostgreSQL is stopped; only its ending waits.
    log = faults.log_dir / "bulk.log"
    logged_before = log.stat().st_size
    payload = {"day": "2026-12-01", "cities": [[1, 10.0, 14.0, 24.0, 2]]}
    with database_stopped():
        sent = transform_data.apply_async(args=[payload])
        wait_for(lambda: f"task {sent.id}: its SUCCESS state waits for the database"
                 in logged_since(log, logged_before), timeout=60, interval=0.2, what="the ending to wait")
    assert sent.get(timeout=120) == {"day": "2026-12-01", "summaries": [[1, 10.0, 14.0, 12.0, 2]]}
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0


def test_thirty_percent_provider_faults_end_with_every_city_refreshed_within_quota(faults, sim):
    # The default crash cap: provider faults end in retries, never in crashes.
    limits = {**BATCHES_OF_20, "WEATHER_QUOTA_PER_MINUTE": "3000", "WEATHER_QUOTA_PER_HOUR": "20000",
              "WEATHER_QUOTA_PER_DAY": "50000", "WEATHER_QUOTA_INTERACTIVE_RESERVE": "0.1"}
    sim.configure(**FLAKY_PROVIDER, fixed_time=FROZEN)
    make_cities(1000)
    faults.start("bulk", extra_env=limits)
    result = update_all_weather_data.delay().get(timeout=30)
    summary = wait_for_run(result["run_id"])
    # Every fault served here is a passing one (500, 429, timeout, a body cut short): all retried.
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (1000, 0), summary
    assert WeatherData.objects.count() == 1000
    stats = sim.stats()
    faults_served = sum(v for k, v in stats["served"].items() if k != "ok")
    assert faults_served / stats["requests"] > 0.15
    # Every provider request reserved its locations first, and no minute held more than the bulk cap.
    assert stats["locations"] <= QuotaGrant.objects.aggregate(total=Sum("locations"))["total"]
    assert busiest_minute(QuotaGrant.objects.values_list("granted_at", "locations")) <= 2700
    assert faults.alive("bulk")
    assert queue_consumers("bulk") >= 1
    # Nothing failed for good, so nothing was dead-lettered.
    out = StringIO()
    call_command("deadletters", "list", "--json", stdout=out)
    assert out.getvalue().strip() == ""
