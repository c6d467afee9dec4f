"""Queue types per lane and broker generation, for real on the broker of the run (RabbitMQ 3.10, or 4.0 in the
second pass): quorum lanes with broker-enforced delivery limits, countdowns through Celery's native delayed delivery,
the migration of a topology declared the old way, and the move of a running 3.x deployment to 4."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from celery import current_app as app
from django.core.management import call_command
from django.db import connection
from django_celery_results.models import TaskResult
from kombu import Connection, Exchange, Queue

from routing import (
    BULK,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    INTERACTIVE,
    LANES,
    TASK_EXCHANGE,
    BrokerGeneration,
    QueueType,
    deployed,
    topology,
)
from routing.broker import check_arguments
from routing.declare import declare_topology
from routing.migrate import MigrationRefusedError, migrate
from tests.factories import make_cities
from tools.harness import ROOT, WorkerPools, broker_ctl, own_vhost, wait_for, wait_for_run, worker_env
from weather.models import RefreshRun, WeatherData
from weather.quota import pause_provider
from weather.tasks import update_all_weather_data


@pytest.mark.parametrize("generation", list(BrokerGeneration))
def test_every_lane_is_a_quorum_queue_where_the_broker_allows_it(generation):
    assert TASK_EXCHANGE.type == "topic", "native delayed delivery routes <delay bits>.<lane>"
    lanes = topology(generation)
    for lane, queue in zip(LANES, lanes.lane_queues, strict=True):
        arguments = queue.queue_arguments
        kind = lanes.queue_type(lane)
        assert arguments["x-queue-type"] == str(kind)
        if kind is QueueType.CLASSIC:
            assert lane.prioritised
            assert not generation.quorum_priorities
            assert "x-delivery-limit" not in arguments
        else:
            assert "x-max-priority" not in arguments, "a quorum queue refuses x-max-priority"
            assert arguments["x-delivery-limit"] == DELIVERY_LIMIT
            assert arguments["x-dead-letter-strategy"] == "at-least-once"
    expected = QueueType.QUORUM if generation is BrokerGeneration.RABBITMQ_4 else QueueType.CLASSIC
    assert lanes.queue_type(INTERACTIVE) is expected
    assert lanes.quorum_lane_names == {lane.name for lane in LANES if lanes.queue_type(lane) is QueueType.QUORUM}
    assert DEAD_LETTER_QUEUE.queue_arguments["x-queue-type"] == "quorum"


def _vhost_queues(*fields: str, vhost: str | None = None) -> dict[str, list[str]]:
    vhost = vhost or app.conf.broker_url.rsplit("/", 1)[-1] or "/"
    out = broker_ctl("list_queues", "-p", vhost, "name", *fields).stdout
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}


@pytest.mark.integration
@pytest.mark.generations
def test_the_live_lanes_have_their_declared_types(live):
    types = _vhost_queues("type")
    for queue in deployed().all_queues:
        assert types[queue.name] == [queue.queue_arguments["x-queue-type"]], queue.name


def _one_message_delayed() -> bool:
    """One message waits in Celery's delay queues, and none is on bulk or held by its worker."""
    queues = _vhost_queues("messages", "messages_unacknowledged")
    waiting = sum(int(m) for name, (m, _) in queues.items() if name.startswith("celery_delayed_"))
    return waiting == 1 and queues[BULK.name] == ["0", "0"]


@pytest.mark.integration
@pytest.mark.generations
def test_a_countdown_retry_on_a_quorum_lane_waits_in_the_broker_not_in_the_worker(live, sim):
    # The provider fails once: the batch retries with a countdown, which Celery sends
    # through its delayed-delivery exchanges (quorum queues with TTLs) to come back to bulk.
    live.start("bulk", extra_env={"WEATHER_RETRY_BASE_SECONDS": "10", "WEATHER_BATCH_SIZE": "20"})
    try:
        make_cities(20)
        sim.script("error")
        run = RefreshRun.objects.get(pk=update_all_weather_data.delay().get(timeout=30)["run_id"])
        wait_for(lambda: sim.stats()["requests"] == 1, timeout=30, what="the failing request")
        wait_for(_one_message_delayed, timeout=10, interval=0.2, what="the retry to wait in a delay queue")
        summary = wait_for_run(run.pk, timeout=60, what="the retried batch")
        assert (summary["cities_refreshed"], summary["cities_failed"]) == (20, 0)
        assert sim.stats()["requests"] == 2
    finally:
        live.start("bulk")


@pytest.mark.integration
@pytest.mark.generations
def test_a_quota_deferral_on_a_quorum_lane_waits_in_the_broker_then_completes(live, sim):
    # Every worker is told to stay away (as after a 429): the batch is refused its quota and
    # sent again for when quota returns, through the same delay queues, then completes.
    live.start("bulk", extra_env={"WEATHER_BATCH_SIZE": "20"})
    try:
        make_cities(20)
        pause_provider(12.0)  # long enough for the queue statistics, which lag by seconds, to show it waiting
        run = RefreshRun.objects.get(pk=update_all_weather_data.delay().get(timeout=30)["run_id"])
        wait_for(_one_message_delayed, timeout=10, interval=0.2, what="the deferred batch to wait in a delay queue")
        assert sim.stats()["requests"] == 0, "nothing asked of the provider while it is paused"
        summary = wait_for_run(run.pk, timeout=60, what="the deferred batch")
        assert (summary["cities_refreshed"], summary["cities_failed"]) == (20, 0)
        assert sim.stats()["requests"] == 1
    finally:
        live.start("bulk")


@pytest.fixture
def legacy_vhost():
    """A vhost of its own holding the topology as an earlier version declared it: a direct exchange, classic
    queues; deleted afterwards."""
    with own_vhost("f_brain_migration_test") as url:
        with Connection(url) as connection:
            channel = connection.channel()
            legacy = Exchange(TASK_EXCHANGE.name, type="direct", durable=True)
            dlx = Exchange(DEAD_LETTER_QUEUE.exchange.name, type="fanout", durable=True)
            for lane in LANES:
                arguments = {"x-dead-letter-exchange": dlx.name}
                if lane.prioritised:
                    arguments["x-max-priority"] = 9
                Queue(lane.name, exchange=legacy, routing_key=lane.name, durable=True,
                      queue_arguments=arguments).bind(channel).declare()
            Queue(DEAD_LETTER_QUEUE.name, exchange=dlx, routing_key="dead_letter", durable=True).bind(
                channel).declare()
            producer = connection.Producer(channel)
            for n in range(5):
                producer.publish({"n": n}, exchange=legacy, routing_key=BULK.name, delivery_mode=2)
            producer.publish({"click": True}, exchange=legacy, routing_key=INTERACTIVE.name, priority=9,
                             delivery_mode=2)
        yield url


@pytest.mark.integration
@pytest.mark.generations
def test_an_old_topology_is_migrated_keeping_every_message(legacy_vhost):
    with Connection(legacy_vhost) as broker:
        before = check_arguments(broker)
        assert any("exchange 'f_brain.tasks'" in problem for problem in before), before
        assert any("queue 'bulk'" in problem for problem in before), before
        # Refused while a consumer is attached to a queue that must move.
        consumer = broker.channel()
        consumer.basic_consume(BULK.name, callback=lambda message: None)
        with pytest.raises(MigrationRefusedError, match="bulk"):
            migrate(broker, report=lambda line: None)
        consumer.close()
        changes = migrate(broker, report=lambda line: None)
        assert "exchange f_brain.tasks" in changes
        assert check_arguments(broker) == []
        types = _vhost_queues("type", vhost="f_brain_migration_test")
        assert {name: kind for name, (kind,) in types.items()} == {
            queue.name: queue.queue_arguments["x-queue-type"] for queue in deployed().all_queues}
        channel = broker.channel()
        bodies = []
        while (message := channel.basic_get(BULK.name, no_ack=True)) is not None:
            bodies.append(json.loads(message.body))
        assert bodies == [{"n": n} for n in range(5)], "every message kept, in order"
        click = channel.basic_get(INTERACTIVE.name, no_ack=True)
        assert click.properties["priority"] == 9
        # The migrated topology routes: a message for bulk reaches bulk.
        declare_topology(channel)
        broker.Producer(channel).publish({"after": True}, exchange=TASK_EXCHANGE.name, routing_key=BULK.name)
        wait_for(lambda: channel.queue_declare(BULK.name, passive=True)[1] == 1, timeout=10, what="routing")
        assert migrate(broker, report=lambda line: None) == [], "nothing left to change"


@pytest.mark.integration
def test_topology_migrate_on_a_matching_broker_changes_nothing(live):
    out = StringIO()
    call_command("topology", "--migrate", stdout=out)
    assert "the broker already matches the topology" in out.getvalue()


# What a 3.x deployment's web does on a click and on an API call: fetches published onto the classic priority lane.
_PUBLISH_AS_3X = """
import os
from routing import Priority
from routing.declare import declare_topology
from routing.broker import broker_connection
from weather.dispatch import enqueue_city_fetch
with broker_connection(write=True) as connection:
    declare_topology(connection.default_channel)  # as the 3.x pools did when they started
for n, city in enumerate(os.environ["CITY_IDS"].split()):
    print(enqueue_city_fetch(int(city), (Priority.CLICK, Priority.API, Priority.WARMUP)[n % 3]).task_id)
"""


@pytest.mark.integration
@pytest.mark.rabbitmq4
def test_a_3x_deployment_moves_to_4_and_every_queued_fetch_completes(transactional_db, sim, simulator_server,
                                                                      tmp_path):
    # The broker was upgraded in place to 4.x: it kept the 3.x topology (a classic priority queue for
    # interactive) and the fetches waiting in it. The deployment now states generation 4.
    cities = make_cities(6)
    with own_vhost("f_brain_upgrade_test") as url:
        base = {**worker_env(connection.settings_dict["NAME"], simulator_server.url), "CELERY_BROKER_URL": url}
        as_3x, as_4 = {**base, "RABBITMQ_GENERATION": "3"}, {**base, "RABBITMQ_GENERATION": "4"}
        published = _manage({**as_3x, "CITY_IDS": " ".join(str(city.pk) for city in cities)},
                            "shell", "--no-imports", "-c", _PUBLISH_AS_3X)
        task_ids = published.stdout.split()
        assert len(task_ids) == len(cities), published.stderr
        types = _vhost_queues("type", "messages", vhost="f_brain_upgrade_test")
        assert types[INTERACTIVE.name] == ["classic", str(len(cities))], types

        refused = _manage(as_4, "topology", "--check", check=False)
        assert refused.returncode == 1
        assert f"queue {INTERACTIVE.name!r} exists with other settings" in refused.stderr, refused.stderr
        migrated = _manage(as_4, "topology", "--migrate")
        assert f"queue {INTERACTIVE.name!r}: declared again" in migrated.stdout, migrated.stdout
        assert f"{len(cities)} message(s) kept" in migrated.stdout, migrated.stdout
        assert _vhost_queues("type", vhost="f_brain_upgrade_test")[INTERACTIVE.name] == ["quorum"]

        pools = WorkerPools(as_4, tmp_path / "pools", consumers=lambda queue: int(
            _vhost_queues("consumers", vhost="f_brain_upgrade_test").get(queue, ["0"])[0]))
        try:
            pools.start(INTERACTIVE.name)
            wait_for(lambda: TaskResult.objects.filter(task_id__in=task_ids, status="SUCCESS").count() == len(cities),
                     timeout=60, what="every fetch queued before the move")
        finally:
            pools.stop_all()
    assert WeatherData.objects.filter(city__in=cities).count() == len(cities)


def _manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done
