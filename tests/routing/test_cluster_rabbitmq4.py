"""A three-node RabbitMQ 4.0 cluster (tools/rabbit_containers.py, 4.3's refusal of transient non-exclusive queues
on): every lane is replicated, interactive included, so killing the node that leads it loses no click."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connection
from django_celery_results.models import TaskResult

from routing import BULK, DEAD_LETTER_QUEUE, INTERACTIVE, MAINTENANCE
from tests.conftest import require
from tests.factories import make_cities
from tools.compose_stack import engine_possible
from tools.harness import WorkerPools, wait_for, worker_env
from tools.rabbit_containers import ContainerBroker, container_broker
from tools.web_tier import web_tier
from tools.workload import Poster
from weather.models import WeatherData

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLUSTER_ENV = {"BROKER_HEARTBEAT_S": "4", "RABBITMQ_GENERATION": "4", "REFRESH_RATE_LIMIT_PER_MINUTE": "10000"}
# More cities than clicks: one after another, a click for each, until ten follow the election.
CITIES = 1000


@pytest.fixture(scope="module")
def cluster() -> Iterator[ContainerBroker]:
    require(engine_possible(), "the RabbitMQ 4 cluster tests (containers)")
    with container_broker("4", 3, strict=True) as made:
        yield made


@pytest.fixture
def interactive_pool(cluster, simulator_server, tmp_path, transactional_db, sim) -> Iterator[WorkerPools]:
    """The interactive pool on the cluster (the broker URL lists every node); `.env` is the deployment's."""
    env = {**worker_env(connection.settings_dict["NAME"], simulator_server.url), **CLUSTER_ENV,
           "CELERY_BROKER_URL": cluster.broker_url}
    pools = WorkerPools(env, tmp_path / "pools", slots={INTERACTIVE.name: 2}, consumers=cluster.consumers)
    try:
        pools.start(INTERACTIVE.name)
        yield pools
    finally:
        cluster.make_whole()
        pools.stop_all()


def test_every_lane_is_a_replicated_quorum_queue(cluster, interactive_pool):
    info = cluster.queue_info("type", "members")
    for queue in (INTERACTIVE.name, BULK.name, MAINTENANCE.name, DEAD_LETTER_QUEUE.name):
        kind, *members = info[queue]
        assert kind == "quorum", (queue, info[queue])
        assert all(node.name in " ".join(members) for node in cluster.nodes), (queue, members)


def test_killing_the_node_that_leads_interactive_loses_no_accepted_click(cluster, interactive_pool, sim):
    cities = make_cities(CITIES)
    leader = cluster.leader(INTERACTIVE.name)
    with web_tier(interactive_pool.env) as tier:
        clicker = Poster(f"{tier.edge}/api/cities/{city.pk}/refresh" for city in cities)
        clicker.start()
        wait_for(lambda: len(clicker.answers) >= 10, timeout=30, what="clicks before the kill")
        killed_at = time.monotonic()
        cluster.kill(leader)
        elected = wait_for(lambda: (now := cluster.leader(INTERACTIVE.name)) is not leader and now, timeout=60,
                           interval=0.2, what="a new leader of interactive")
        elected_at = time.monotonic()
        # Clicks go on past the election: those sent after it must all be accepted.
        wait_for(lambda: clicker.sent_after(elected_at) >= 10 or not clicker.is_alive(),
                 timeout=120, what="clicks after the election")
        answers = clicker.finish()
    assert clicker.sent_after(elected_at) >= 10, "the cities ran out before the election ended"
    assert elected in cluster.running()
    timeline = [(round(a.sent - killed_at, 2), round(a.answered - killed_at, 2), a.status) for a in answers]
    during = [a.status for a in answers if a.under_way(killed_at, elected_at)]
    assert during, f"no click was under way during the election: the test proved nothing {timeline}"
    refusals = [a for a in answers if a.status != 202]
    assert all(a.status == 503 for a in refusals), timeline
    assert all(a.sent <= elected_at for a in refusals), f"a click sent after the election was refused {timeline}"
    accepted = [a.body["task_id"] for a in answers if a.status == 202]
    assert accepted
    wait_for(lambda: TaskResult.objects.filter(task_id__in=accepted, status="SUCCESS").count() == len(accepted),
             timeout=120, interval=0.5, what="every accepted click's fetch")
    assert WeatherData.objects.filter(city__in=cities).count() == len(accepted)
    print(f"{len(accepted)} accepted, {len(refusals)} refused, {len(during)} under way during the election "
          f"({elected_at - killed_at:.1f} s): {timeline}")
