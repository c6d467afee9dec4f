"""Queue types per lane, for real on the machine's RabbitMQ: quorum lanes with broker-enforced delivery limits,
countdowns through Celery's native delayed delivery, and the migration of a topology declared the old way."""

from __future__ import annotations

import json
import subprocess
from io import StringIO

import pytest
from celery import current_app as app
from django.core.management import call_command
from kombu import Connection, Exchange, Queue

from routing import (
    ALL_QUEUES,
    BULK,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    INTERACTIVE,
    LANE_QUEUES,
    LANES,
    TASK_EXCHANGE,
    QueueType,
)
from routing.bootsteps import declare_topology
from routing.broker import check_arguments
from routing.migrate import MigrationRefusedError, migrate
from tests.factories import make_cities
from tools.harness import wait_for, wait_for_run
from weather.models import RefreshRun
from weather.quota import pause_provider
from weather.tasks import update_all_weather_data


def test_every_lane_but_the_priority_one_is_a_quorum_queue():
    assert TASK_EXCHANGE.type == "topic", "native delayed delivery routes <delay bits>.<lane>"
    for lane, queue in zip(LANES, LANE_QUEUES, strict=True):
        arguments = queue.queue_arguments
        assert arguments["x-queue-type"] == str(lane.queue_type)
        if lane.prioritised:
            assert lane.queue_type is QueueType.CLASSIC
            assert "x-delivery-limit" not in arguments
        else:
            assert lane.queue_type is QueueType.QUORUM
            assert arguments["x-delivery-limit"] == DELIVERY_LIMIT
            assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert INTERACTIVE.queue_type is QueueType.CLASSIC
    assert DEAD_LETTER_QUEUE.queue_arguments["x-queue-type"] == "quorum"


def _vhost_queues(*fields: str) -> dict[str, list[str]]:
    vhost = app.conf.broker_url.rsplit("/", 1)[-1]
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", *fields],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}


@pytest.mark.integration
def test_the_live_lanes_have_their_declared_types(live):
    types = _vhost_queues("type")
    for queue in ALL_QUEUES:
        assert types[queue.name] == [queue.queue_arguments["x-queue-type"]], queue.name


def _one_message_delayed() -> bool:
    """One message waits in Celery's delay queues, and none is on bulk or held by its worker."""
    queues = _vhost_queues("messages", "messages_unacknowledged")
    waiting = sum(int(m) for name, (m, _) in queues.items() if name.startswith("celery_delayed_"))
    return waiting == 1 and queues[BULK.name] == ["0", "0"]


@pytest.mark.integration
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
    vhost = "f_brain_migration_test"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        with Connection(url) as connection:
            channel = connection.channel()
            legacy = Exchange(TASK_EXCHANGE.name, type="direct", durable=True)
            dlx = Exchange(DEAD_LETTER_QUEUE.exchange.name, type="fanout", durable=True)
            for queue in LANE_QUEUES:
                arguments = {"x-dead-letter-exchange": dlx.name}
                if queue.name == INTERACTIVE.name:
                    arguments["x-max-priority"] = 9
                Queue(queue.name, exchange=legacy, routing_key=queue.name, durable=True,
                      queue_arguments=arguments).bind(channel).declare()
            Queue(DEAD_LETTER_QUEUE.name, exchange=dlx, routing_key="dead_letter", durable=True).bind(
                channel).declare()
            producer = connection.Producer(channel)
            for n in range(5):
                producer.publish({"n": n}, exchange=legacy, routing_key=BULK.name, delivery_mode=2)
            producer.publish({"click": True}, exchange=legacy, routing_key=INTERACTIVE.name, priority=9,
                             delivery_mode=2)
        yield url
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.mark.integration
def test_an_old_topology_is_migrated_keeping_every_message(legacy_vhost):
    with Connection(legacy_vhost) as connection:
        before = check_arguments(connection)
        assert any("exchange 'f_brain.tasks'" in problem for problem in before), before
        assert any("queue 'bulk'" in problem for problem in before), before
        # Refused while a consumer is attached to a queue that must move.
        consumer = connection.channel()
        consumer.basic_consume(BULK.name, callback=lambda message: None)
        with pytest.raises(MigrationRefusedError, match="bulk"):
            migrate(connection, report=lambda line: None)
        consumer.close()
        changes = migrate(connection, report=lambda line: None)
        assert "exchange f_brain.tasks" in changes
        assert check_arguments(connection) == []
        channel = connection.channel()
        bodies = []
        while (message := channel.basic_get(BULK.name, no_ack=True)) is not None:
            bodies.append(json.loads(message.body))
        assert bodies == [{"n": n} for n in range(5)], "every message kept, in order"
        click = channel.basic_get(INTERACTIVE.name, no_ack=True)
        assert click.properties["priority"] == 9
        # The migrated topology routes: a message for bulk reaches bulk.
        declare_topology(channel)
        connection.Producer(channel).publish({"after": True}, exchange=TASK_EXCHANGE.name, routing_key=BULK.name)
        wait_for(lambda: channel.queue_declare(BULK.name, passive=True)[1] == 1, timeout=10, what="routing")
        assert migrate(connection, report=lambda line: None) == [], "nothing left to change"


@pytest.mark.integration
def test_topology_migrate_on_a_matching_broker_changes_nothing(live):
    out = StringIO()
    call_command("topology", "--migrate", stdout=out)
    assert "the broker already matches the topology" in out.getvalue()
