"""Bulk refresh at provider scale with real workers: batching, quota across processes, faults, progress."""

import math
import os
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, Priority
from tests.factories import make_cities, make_city
from tools.harness import purge_lanes, queue_depth, wait_for
from weather import effects
from weather.dispatch import enqueue_city_fetch
from weather.models import Effect, PendingFetch, RefreshBatch, RefreshRun, TaskAttempt, WeatherData
from weather.schedules import SLOT_HEADER
from weather.sharedmetrics import shared_samples
from weather.tasks import update_all_weather_data

pytestmark = pytest.mark.integration

FROZEN = 1_790_000_000.0  # one fixed observation slot for runs that must not straddle two


def _batch_runs_ended() -> float:
    """Runs of refresh batches that have ended on any pool, in any state (the pools' shared counters)."""
    return sum(sample.value for _, sample in shared_samples("f_brain_tasks")
               if sample.labels["task"] == "weather.tasks.refresh_weather_batch" and sample.name.endswith("_total"))


def _run_and_wait(timeout: float = 60) -> dict:
    summary = update_all_weather_data.delay().get(timeout=30)
    run = RefreshRun.objects.get(pk=summary["run_id"])
    return wait_for(lambda: (s := run.summary())["finished"] and s, timeout=timeout, what="the refresh")


def test_refresh_makes_one_request_per_batch_and_no_duplicates(live, sim):
    sim.configure(fixed_time=FROZEN)
    cities = make_cities(450)
    summary = _run_and_wait()
    batches = math.ceil(450 / settings.WEATHER_BATCH_SIZE)
    assert summary == {**summary, "batches": batches, "cities_refreshed": 450, "cities_failed": 0}
    stats = sim.stats()
    assert (stats["requests"], stats["locations"]) == (batches, 450)
    assert WeatherData.objects.count() == 450

    _run_and_wait()
    assert WeatherData.objects.count() == 450, "the same observation is stored once"
    assert set(WeatherData.objects.values_list("city_id", flat=True)) == {c.pk for c in cities}
    assert sim.stats()["requests"] == 2 * batches
    # The second run met every slot already stored: the ledger says so, per city, and nothing was applied twice.
    readings = {t.kind: t for t in effects.tally()}["reading"]
    assert (readings.units, readings.applied, readings.discarded, readings.applied_twice) == (450, 450, 450, 0)
    assert effects.applied_twice() == {}
    batches_written = Effect.objects.filter(kind="batch")
    assert batches_written.filter(applied=True).count() == 2 * batches, "two runs, each batch done once"
    writers = set(batches_written.values_list("task_name", "attempt", "delivery"))
    assert writers == {("weather.tasks.refresh_weather_batch", 0, 1)}
    assert {host.split("@")[0] for host in batches_written.values_list("host", flat=True)} == {"bulk"}
    assert os.getpid() not in set(batches_written.values_list("pid", flat=True)), "written by the pool's children"


def test_one_bad_location_fails_alone(live, sim):
    make_cities(30)
    sim.script("bad_value")
    summary = _run_and_wait()
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (29, 1)
    assert "relative_humidity_2m" in RefreshBatch.objects.get().error


def test_a_429_and_a_5xx_inside_one_refresh_are_retried_and_it_completes(live, sim):
    make_cities(450)
    sim.configure(retry_after_s=0.3)
    sim.script("rate_limit", "error")
    summary = _run_and_wait()
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (450, 0)
    served = sim.stats()["served"]
    assert served == {"rate_limit": 1, "error": 1, "ok": summary["batches"]}


def test_quota_is_shared_by_processes_and_the_interactive_reserve_holds(live, sim):
    limited = {"WEATHER_QUOTA_PER_MINUTE": "100", "WEATHER_QUOTA_PER_HOUR": "1000",
               "WEATHER_QUOTA_PER_DAY": "5000", "WEATHER_QUOTA_INTERACTIVE_RESERVE": "0.2",
               "WEATHER_BATCH_SIZE": "20"}
    live.start("bulk", extra_env=limited)
    live.start("interactive", extra_env=limited)
    try:
        make_cities(200)
        batch_runs_before = _batch_runs_ended()
        result = update_all_weather_data.delay().get(timeout=30)
        run = RefreshRun.objects.get(pk=result["run_id"])
        # Two bulk processes race for 80 locations (100 less the 20 % reserve).
        wait_for(lambda: run.summary()["batches_done"] == 4, timeout=30, what="four batches")
        # Once each of the ten batches has had its first run (four fetched, six refused and deferred),
        # an over-grant would have fetched.
        wait_for(lambda: _batch_runs_ended() >= batch_runs_before + 10, timeout=30, what="every batch's first run")
        assert sim.stats()["locations"] == 80
        assert run.summary()["batches_done"] == 4, "the other batches wait for quota"
        assert RefreshBatch.objects.filter(run=run, status="pending").count() == 6

        person = make_city()
        enqueue_city_fetch(person.pk, Priority.CLICK)
        wait_for(lambda: WeatherData.objects.filter(city=person).exists(), timeout=20,
                 what="the interactive fetch inside the reserve")
        assert sim.stats()["locations"] == 81
    finally:
        live.stop("bulk")
        live.stop("interactive")
        purge_lanes()  # the deferred batches must not run in later tests
        live.start("bulk")
        live.start("interactive")


def test_refresh_all_command_waits_and_prints_the_summary(live, sim):
    make_cities(45)
    out = StringIO()
    call_command("refresh_all", "--wait", "--timeout", "60", stdout=out, stderr=StringIO())
    assert "refreshed 45 of 45 cities in 1 batches; 0 failed" in out.getvalue()


def test_two_messages_for_one_periodic_slot_make_one_run(live, sim):
    # What a beat resumed after a pause does: send the slot the standby already sent.
    sim.configure(fixed_time=FROZEN)
    make_cities(60)
    slot = {SLOT_HEADER: "update_weather_data@2026-12-03T12:00:00+00:00"}
    first = update_all_weather_data.apply_async(headers=slot).get(timeout=30)
    again = update_all_weather_data.apply_async(headers=slot).get(timeout=30)
    assert again["run_id"] == first["run_id"]
    assert RefreshRun.objects.get().slot == slot[SLOT_HEADER]
    wait_for(lambda: RefreshRun.objects.get().summary()["finished"], timeout=60, what="the slot's run")
    assert sim.stats()["locations"] == 60, "the second message sent no batch"
    runs = list(Effect.objects.filter(kind="run").order_by("id").values_list("unit", "applied"))
    assert runs == [(slot[SLOT_HEADER], True), (slot[SLOT_HEADER], False)]
    # Without a slot (an operator's refresh_all) each message is a run of its own.
    assert update_all_weather_data.delay().get(timeout=30)["run_id"] != first["run_id"]


def test_a_click_refused_for_quota_fails_saying_when_quota_returns_and_is_not_dead_lettered(live, sim):
    # A refusal the person has been told of (the result says when quota returns): nothing to replay.
    live.start("interactive", extra_env={"WEATHER_QUOTA_PER_MINUTE": "1", "WEATHER_QUOTA_PER_HOUR": "0",
                                         "WEATHER_QUOTA_PER_DAY": "0"})
    purge_lanes()
    try:
        first, second = make_cities(2)
        enqueue_city_fetch(first.pk, Priority.CLICK)
        wait_for(lambda: WeatherData.objects.filter(city=first).exists(), timeout=30, what="the first click")
        refused = enqueue_city_fetch(second.pk, Priority.CLICK).task_id
        result = wait_for(lambda: TaskResult.objects.filter(task_id=refused, status="FAILURE").first(), timeout=30,
                          what="the second click to be refused")
        assert "QuotaExceededError" in result.result
        assert "quota returns at" in result.result
        assert queue_depth(DEAD_LETTER_QUEUE.name) == 0, "declined, not dead-lettered"
        assert not PendingFetch.objects.exists(), "its slot released"
        assert not TaskAttempt.objects.filter(task_id=refused).exists(), "its starts forgotten"
    finally:
        live.start("interactive")
