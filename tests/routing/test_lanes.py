"""The pools as real processes on RabbitMQ: lanes, priorities, isolation, dead letters."""

import json
import os
from io import StringIO

import pytest
from celery import current_app as app
from django.core.management import CommandError, call_command
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, INTERACTIVE, Priority, QueueType, deployed
from tests.conftest import POOL_SLOTS
from tests.factories import make_cities, make_city
from tools.harness import purge_lanes, queue_consumers, queue_depth, wait_for
from weather.dispatch import enqueue_city_fetch
from weather.models import RefreshBatch, RefreshRun, WeatherData
from weather.tasks import cleanup_old_weather_data, extract_data, refresh_weather_batch, update_all_weather_data
from workers.pools import load_pools

pytestmark = pytest.mark.integration


def _worker_of(task_id: str) -> str:
    return wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS")
                    .values_list("worker", flat=True).first(), timeout=30, what=f"task {task_id}")


@pytest.mark.generations
def test_each_kind_of_task_runs_on_its_own_pool(live):
    city = make_city()
    fetch_id = enqueue_city_fetch(city.pk, Priority.CLICK).task_id
    refresh = update_all_weather_data.delay()
    cleanup = cleanup_old_weather_data.delay()
    etl = extract_data.delay()
    assert _worker_of(fetch_id).startswith("interactive@")
    assert _worker_of(refresh.id).startswith("bulk@")
    assert _worker_of(cleanup.id).startswith("maintenance@")
    assert _worker_of(etl.id).startswith("bulk@")


def test_background_pools_run_at_their_cpu_niceness(live):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for name, pool in load_pools({}).items():
        for pid in (live.processes[name].pid, *live.child_pids(name)):
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, base + pool.cpu_nice), name
    assert load_pools({})["bulk"].cpu_nice > load_pools({})["interactive"].cpu_nice


@pytest.mark.generations
def test_topology_check_passes_against_the_running_pools(live):
    out = StringIO()
    call_command("topology", "--check", stdout=out)
    assert "topology check passed" in out.getvalue()


def test_topology_check_names_a_lane_without_consumers(live):
    live.stop("maintenance")
    try:
        with pytest.raises(CommandError, match="'maintenance' has no consumer"):
            call_command("topology", "--check", stdout=StringIO())
    finally:
        live.start("maintenance")


@pytest.mark.generations
def test_interactive_backlog_is_served_in_priority_order(live, sim):
    cities = [make_city() for _ in range(10)]
    live.start("interactive", concurrency=1)
    try:
        # The first fetch holds the only slot while the backlog builds up behind it.
        sim.configure(latency_ms=600)
        enqueue_city_fetch(cities[0].pk, Priority.WARMUP)
        wait_for(lambda: sim.stats()["requests"] == 1, timeout=10, what="the first fetch to start")
        backlog = [Priority.WARMUP, Priority.API, Priority.CLICK] * 3
        by_city = {}
        for city, priority in zip(cities[1:], backlog, strict=True):
            enqueue_city_fetch(city.pk, priority)
            by_city[city.pk] = priority
        assert sim.stats()["requests"] == 1, "the backlog must be queued, not running"
        wait_for(lambda: WeatherData.objects.count() == 10, timeout=30, what="all fetches")
    finally:
        sim.configure(latency_ms=0)
        live.start("interactive")
    order = [by_city[c] for c in WeatherData.objects.order_by("fetched_at").values_list("city_id", flat=True)
             if c in by_city]
    names = [p.name for p in order]
    assert sorted(order) == sorted(backlog), names
    if deployed().queue_type(INTERACTIVE) is QueueType.CLASSIC:
        # RabbitMQ 3.x's classic priority queue: strictly by priority.
        assert order == sorted(backlog, reverse=True), names
    else:
        # RabbitMQ 4.0 to 4.2's quorum queue: clicks are high, served about two for every normal one, so
        # the three are out within the first five; API and warm-up fetches are normal, in arrival order.
        # In arrival order (no priorities) the last click would be ninth.
        assert max(i for i, p in enumerate(order) if p is Priority.CLICK) <= 4, names
        assert [p for p in order if p is not Priority.CLICK] == [p for p in backlog if p is not Priority.CLICK], names


@pytest.mark.generations
def test_interactive_fetch_finishes_while_bulk_is_saturated(live, sim):
    # Every bulk slot holds an 8 s batch and a long backlog waits behind them. A
    # pool that also served bulk would make the fetch wait for a batch to end; in
    # the topology it ends before any batch does.
    batch, batches = 20, 100
    cities = make_cities(batch * batches)
    sim.configure(latency_per_location_ms=400)
    run = RefreshRun.objects.create(batch_size=batch, batches_total=batches, cities_total=len(cities))
    ids = [c.pk for c in cities]
    for index in range(batches):
        RefreshBatch.objects.create(run=run, index=index, cities=batch)
        refresh_weather_batch.delay(run.pk, index, ids[index * batch:(index + 1) * batch])
    wait_for(lambda: sim.stats()["requests"] >= POOL_SLOTS["bulk"], timeout=10, what="every bulk slot to be busy")
    try:
        person = make_city()
        enqueue_city_fetch(person.pk, Priority.CLICK)
        # Bounded by the lane's own soft limit: a fetch queued behind a bulk batch would wait 8 s a batch.
        wait_for(lambda: WeatherData.objects.filter(city=person).exists(),
                 timeout=load_pools({})["interactive"].soft_time_limit, what="the interactive fetch")
        finished_batches = RefreshBatch.objects.filter(run=run).exclude(status=RefreshBatch.Status.PENDING).count()
        backlog = queue_depth("bulk")
    finally:
        # Drop the backlog, and the batches the pool holds prefetched, before the next test.
        live.kill("bulk")
        # Its unacknowledged batches return to the queue once the broker sees it gone.
        wait_for(lambda: queue_consumers("bulk") == 0, timeout=30, what="the killed pool to detach")
        purge_lanes()
        sim.configure(latency_per_location_ms=0)
        live.start("bulk")
    assert finished_batches == 0, "the interactive fetch waited for a bulk batch to finish"
    assert backlog > 50, "bulk must still hold its backlog when the interactive fetch completes"


@pytest.mark.generations
def test_a_message_rejected_for_good_lands_in_dead_letter(live, sim):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(DEAD_LETTER_QUEUE.name)
    city = make_city()
    sim.script("bad_value")
    task_id = enqueue_city_fetch(city.pk, Priority.API).task_id
    wait_for(lambda: queue_depth(DEAD_LETTER_QUEUE.name) == 1, timeout=30, what="a dead letter")
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get(DEAD_LETTER_QUEUE.name, no_ack=True)
    headers = message.headers
    assert headers["id"] == task_id
    assert headers["task"] == "weather.tasks.fetch_weather_for_city"
    death = headers["x-death"][0]
    assert (death["queue"], death["reason"]) == ("interactive", "rejected")
    assert json.loads(message.body)[0] == [city.pk]
    assert message.properties["delivery_mode"] == 2, "messages are persistent"


def test_purging_dead_letters_needs_confirmation(live, sim):
    city = make_city()
    sim.script("bad_value")
    enqueue_city_fetch(city.pk, Priority.API)
    wait_for(lambda: queue_depth(DEAD_LETTER_QUEUE.name) >= 1, timeout=30, what="a dead letter")
    with pytest.raises(CommandError, match="--yes"):
        call_command("deadletters", "purge", stdout=StringIO())
    assert queue_depth(DEAD_LETTER_QUEUE.name) >= 1
    out = StringIO()
    call_command("deadletters", "purge", "--yes", stdout=out)
    assert "purged" in out.getvalue()
    assert queue_depth(DEAD_LETTER_QUEUE.name) == 0


def test_sigterm_lets_the_running_fetch_finish_once_and_leaves_the_rest_queued(live, sim):
    # SIGTERM is Celery's warm shutdown: no new work; the running task finishes and is acked.
    running, waiting = make_city(), make_city()
    live.start("interactive", concurrency=1)
    try:
        # Slow, yet within the workers' read timeout in tests (1.5 s): the fetch succeeds.
        sim.configure(latency_ms=1000)
        enqueue_city_fetch(running.pk, Priority.CLICK)
        enqueue_city_fetch(waiting.pk, Priority.CLICK)
        wait_for(lambda: sim.stats()["requests"] == 1, timeout=20, what="the first fetch to start")
        live.stop("interactive")  # SIGTERM, as a PaaS or `docker stop` sends
        assert WeatherData.objects.filter(city=running).exists(), "the running fetch finished"
        assert not WeatherData.objects.filter(city=waiting).exists()
        assert queue_depth("interactive") == 1, "the prefetched fetch is back on its queue"
        sim.configure(latency_ms=0)
    finally:
        live.start("interactive")
    wait_for(lambda: WeatherData.objects.filter(city=waiting).exists(), timeout=30, what="the requeued fetch")
    assert sim.stats()["requests"] == 2, "the finished fetch was acked, never run again"


def test_a_fetch_outliving_the_stop_grace_is_killed_and_requeued(live, sim):
    city = make_city()
    live.start("interactive", concurrency=1)
    try:
        sim.configure(latency_ms=8000)
        enqueue_city_fetch(city.pk, Priority.CLICK)
        wait_for(lambda: sim.stats()["requests"] == 1, timeout=20, what="the fetch to start")
        # SIGTERM, then SIGKILL after a one-second grace, as Docker and Kubernetes do after theirs.
        live.stop("interactive", timeout=1)
        assert queue_depth("interactive") == 1, "the unfinished fetch is back on its queue"
        assert not WeatherData.objects.filter(city=city).exists()
        sim.configure(latency_ms=0)
    finally:
        live.start("interactive")
    wait_for(lambda: WeatherData.objects.filter(city=city).exists(), timeout=30, what="the requeued fetch")
