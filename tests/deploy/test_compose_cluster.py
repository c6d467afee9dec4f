"""The compose `cluster` profile on a real Docker engine: three RabbitMQ nodes, one cluster, a node lost mid-refresh.

Like a user following `.env.example`: the profile on, and CELERY_BROKER_URL listing
every node, so clients fail over in turn. On RabbitMQ 4, what docker-compose.yml runs (every lane,
interactive included, a quorum queue with a member on each node); 3.x clusters are proven by
tests/routing/test_cluster.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from routing import BrokerGeneration, topology
from tools.compose_stack import AppImage, ComposeStack, compose_stack
from tools.faults import FROZEN
from tools.harness import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CITIES = 200
BATCH_SIZE = 20
NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
SERVICES = [*NODES, "db", "web", "edge", "worker-interactive", "worker-bulk", "worker-maintenance", "simulator"]


@pytest.fixture(scope="module", params=["4"], ids=lambda g: f"rabbitmq{g}")
def cluster(request, app_image: AppImage, tmp_path_factory) -> Iterator[ComposeStack]:
    env = {"DEMO_CITIES": str(CITIES), "WEATHER_BATCH_SIZE": str(BATCH_SIZE), "BROKER_HEARTBEAT_S": "4"}
    with compose_stack(tmp_path_factory.mktemp(f"cluster-{request.param}"), request.param, env=env,
                       profiles=["cluster"]) as made:
        made.up()
        made.wait_healthy(SERVICES, timeout=300)
        yield made


def _queues(stack: ComposeStack) -> dict[str, dict]:
    out = stack.rabbitmqctl("list_queues", "name", "type", "leader", "members", "--formatter", "json")
    return {row["name"]: row for row in json.loads(out)}


def test_three_nodes_form_one_cluster_and_every_quorum_lane_has_a_member_on_each(cluster):
    status = json.loads(cluster.rabbitmqctl("cluster_status", "--formatter", "json"))
    nodes = {f"rabbit@{node}" for node in NODES}
    assert set(status["running_nodes"]) == nodes, status["running_nodes"]
    queues = _queues(cluster)
    quorum_lanes = topology(BrokerGeneration(int(cluster.broker))).quorum_lane_names
    assert set(queues) >= quorum_lanes, sorted(queues)
    for lane in quorum_lanes:
        assert queues[lane]["type"] == "quorum", queues[lane]
        assert set(queues[lane]["members"]) == nodes, queues[lane]


def test_the_node_leading_bulk_killed_mid_refresh_loses_nothing(cluster):
    cluster.simulator("/__sim/reset")
    cluster.simulator("/__sim/config", {"latency_ms": 3000, "fixed_time": FROZEN})
    leader = _queues(cluster)["bulk"]["leader"].split("@")[1]
    run_id = cluster.refresh_all()
    wait_for(lambda: cluster.simulator("/__sim/stats")["requests"] >= 1, timeout=60, interval=0.2,
             what="a batch to be at the provider")
    (node,) = cluster.containers(leader)
    restarts = cluster.inspect(node)["RestartCount"]
    cluster.crash(node)
    cluster.simulator("/__sim/config", {"latency_ms": 0, "fixed_time": FROZEN})

    run = cluster.wait_for_run(run_id, timeout=300)
    assert (run["refreshed"], run["failed"]) == (CITIES, 0), run
    assert cluster.units_applied_twice() == 0
    # Another node leads bulk now, and the killed one is back by the restart policy, in the cluster again.
    wait_for(lambda: cluster.inspect(node)["RestartCount"] > restarts, timeout=60, interval=1,
             what="the killed node to be restarted")
    cluster.wait_healthy(NODES, timeout=180)
    status = json.loads(cluster.rabbitmqctl("cluster_status", "--formatter", "json"))
    assert len(status["running_nodes"]) == len(NODES), status
    cluster.simulator("/__sim/reset")
