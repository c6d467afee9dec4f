"""No single broker to lose: a three-node RabbitMQ cluster of the test's own (tools/rabbit_cluster.py), quorum lanes,
real pools and PostgreSQL, a node killed or stopped mid-work. Loopback only; the machine's RabbitMQ is not touched."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult
from kombu import Connection

from routing import BULK, DEAD_LETTER_QUEUE, DELIVERY_LIMIT, INTERACTIVE, MAINTENANCE
from tests.conftest import require
from tests.factories import make_cities
from tools.faults import FROZEN, applied_twice, busiest_minute, kill_bulk_leader, majority_lost, poison_one_batch
from tools.harness import ROOT, WorkerPools, post_json, run_summary, wait_for, wait_for_run, worker_env
from tools.rabbit_cluster import RabbitCluster, cluster_possible, rabbit_cluster
from tools.web_tier import web_tier
from tools.workload import Poster
from weather.apikeys import issue_key
from weather.models import DailySummaryRun, QuotaGrant, RefreshRun, WeatherData
from weather.quota import Consumer, QuotaLimits

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

POOLS = {INTERACTIVE.name: 2, BULK.name: 2, MAINTENANCE.name: 1}
# Heartbeats of a few seconds, so pools notice a killed node quickly.
CLUSTER_ENV = {"BROKER_HEARTBEAT_S": "4", "WEATHER_BATCH_SIZE": "20"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    require(cluster_possible(), "the cluster tests (Debian's rabbitmq-server, three nodes)")
    with rabbit_cluster(3) as made:
        yield made


@pytest.fixture
def on_cluster(cluster, simulator_server, tmp_path, transactional_db, sim) -> Iterator[WorkerPools]:
    """Every pool on the cluster (the broker URL lists every node), on the test database; `.env` is theirs."""
    env = {**worker_env(connection.settings_dict["NAME"], simulator_server.url), **CLUSTER_ENV,
           "CELERY_BROKER_URL": cluster.broker_url}
    pools = WorkerPools(env, tmp_path / "pools", slots=POOLS, consumers=cluster.consumers)
    try:
        pools.start_all(POOLS)
        yield pools
    finally:
        # A test that killed or stopped a node leaves the cluster whole again, before the pools detach from it.
        cluster.make_whole()
        pools.stop_all()
        _purge(cluster.broker_url, [INTERACTIVE.name, BULK.name, MAINTENANCE.name, DEAD_LETTER_QUEUE.name])


def _purge(broker_url: str, queues: list[str]) -> None:
    """Empty the queues through one AMQP connection (a rabbitmqctl call per queue takes seconds)."""
    with Connection(broker_url, connect_timeout=10) as conn:
        for queue in queues:
            channel = conn.channel()
            with contextlib.suppress(*conn.channel_errors):  # a queue this test never declared
                channel.queue_purge(queue)
            with contextlib.suppress(*conn.channel_errors):
                channel.close()


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _refresh(env: dict) -> RefreshRun:
    """Start a refresh as an operator does, through the cluster."""
    started = _manage(env, "refresh_all")
    assert started.returncode == 0, started.stderr
    return wait_for(lambda: RefreshRun.objects.order_by("-pk").first(), timeout=60, what="the refresh's run")



def _dead_letters(env: dict) -> list[dict]:
    listed = _manage(env, "deadletters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_the_lanes_run_on_the_cluster_and_each_node_is_reported(cluster, on_cluster):
    env = on_cluster.env
    types = cluster.queue_info("type")
    assert (types[BULK.name], types[MAINTENANCE.name], types[INTERACTIVE.name]) == (["quorum"], ["quorum"],
                                                                                      ["classic"])
    members = cluster.queue_info("members")
    assert all(node.name in " ".join(members[BULK.name]) for node in cluster.nodes), members[BULK.name]
    check = _manage(env, "topology", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    for node in cluster.nodes:
        assert f":{node.port}//: ok" in check.stdout, check.stdout
    with web_tier(env) as tier, urllib.request.urlopen(f"{tier.edge}/readyz", timeout=10) as response:
        ready = json.load(response)
    assert len(ready["broker_nodes"]) == 3
    assert set(ready["broker_nodes"].values()) == {"ok"}


@pytest.mark.timeout(300)  # a minute of it waits for the quota window to slide
def test_killing_the_bulk_leader_mid_refresh_loses_nothing(cluster, on_cluster, sim):
    env = on_cluster.env
    # A provider quota smaller than the refresh: the last batches wait for the minute to
    # slide (deferred through the cluster's delay queues) while the leader dies.
    per_minute = 420
    cap = QuotaLimits(per_minute, 0, 0, settings.WEATHER_QUOTA_INTERACTIVE_RESERVE).cap("minute", Consumer.BULK)
    assert cap < 400
    on_cluster.start("bulk", extra_env={"WEATHER_QUOTA_PER_MINUTE": str(per_minute)})
    sim.configure(latency_ms=300, fixed_time=FROZEN)
    make_cities(400)
    run = _refresh(env)
    wait_for(lambda: run_summary(run.pk)["batches_done"] >= 2, timeout=60, what="the refresh to be under way")
    leader = kill_bulk_leader(cluster)
    summary = wait_for_run(run.pk)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (400, 0), summary
    assert WeatherData.objects.count() == 400
    assert applied_twice() == 0
    assert busiest_minute(QuotaGrant.objects.values_list("granted_at", "locations")) <= cap, \
        "the quota never exceeded, node killed or not"
    assert cluster.leader(BULK.name) != leader, "a surviving node leads the queue now"
    # The pools of the quorum lanes found the surviving nodes by themselves. (The classic
    # interactive queue lives on one node: if that was the one killed, its lane waits for
    # it, by design; see routing/lanes.py.)
    wait_for(lambda: cluster.consumers(BULK.name) >= 1 and cluster.consumers(MAINTENANCE.name) >= 1, timeout=60,
             interval=1, what="the quorum lanes' pools to consume again")


def test_a_202_during_a_leader_election_is_never_lost(cluster, on_cluster, sim):
    env = on_cluster.env
    _, key = issue_key("cluster-test", rate_limit_per_minute=1000)
    today = timezone.now().date()
    days = [today - timedelta(days=n) for n in range(1, settings.WEATHER_RETENTION_DAYS)]
    with web_tier(env) as tier:
        # Starts of the daily summary (published to bulk, a quorum lane), one after another, while the queue
        # elects a new leader: a 202 only once the cluster confirmed the message, else a 503.
        starts = Poster((f"{tier.edge}/api/etl/daily-summary?day={day}" for day in days),
                        headers={"X-API-Key": key}, every_s=0.1)
        starts.start()
        wait_for(lambda: len(starts.answers) >= 2, timeout=30, what="starts before the kill")
        killed_at = time.monotonic()
        leader = kill_bulk_leader(cluster)
        wait_for(lambda: cluster.leader(BULK.name) is not leader, timeout=60, interval=0.2,
                 what="a new leader of bulk")
        elected_at = time.monotonic()
        wait_for(lambda: starts.sent_after(elected_at) >= 3 or not starts.is_alive(), timeout=120,
                 what="starts after the election")
        answers = starts.finish()
    timeline = [(round(a.sent - killed_at, 2), round(a.answered - killed_at, 2), a.status) for a in answers]
    assert [a for a in answers if a.under_way(killed_at, elected_at)], \
        f"no start was under way during the election: the test proved nothing {timeline}"
    assert starts.sent_after(elected_at) >= 3, f"the days ran out before the election ended {timeline}"
    assert all(a.status in (202, 503) for a in answers), timeline
    assert all(a.status == 202 for a in answers if a.sent > elected_at), f"refused after the election {timeline}"
    accepted = [a.body["task_id"] for a in answers if a.status == 202]
    # Every accepted start ran: the last step of each accepted chain succeeded.
    wait_for(lambda: TaskResult.objects.filter(task_id__in=accepted, status="SUCCESS").count() == len(accepted),
             timeout=120, what="every accepted chain to finish")
    assert DailySummaryRun.objects.filter(task_id__in=accepted).count() == len(accepted)


def test_a_click_while_the_interactive_queues_node_is_down_is_refused_never_lost(cluster, on_cluster, sim):
    env = on_cluster.env
    (city,) = make_cities(1)
    home = cluster.home_node(INTERACTIVE.name)
    # The web tier talks to another node first, so the queue's node going down does not cut its
    # connection: the case where RabbitMQ confirmed a message that reached no queue.
    others_first = ";".join(node.url for node in sorted(cluster.nodes, key=lambda node: node == home))
    with web_tier({**env, "CELERY_BROKER_URL": others_first, "REFRESH_RATE_LIMIT_PER_MINUTE": "1000"}) as tier:
        status, body = post_json(f"{tier.edge}/api/cities/{city.pk}/refresh")
        assert status == 202, body
        wait_for(lambda: TaskResult.objects.filter(task_id=body["task_id"], status="SUCCESS").exists(), timeout=60,
                 what="the first click's fetch")
        cluster.stop(home)
        # The classic queue cannot take the message: the cluster returns it (mandatory), the click gets 503.
        status, body = post_json(f"{tier.edge}/api/cities/{city.pk}/refresh")
        assert status == 503, body
        cluster.start(home)
        wait_for(lambda: cluster.consumers(INTERACTIVE.name) >= 1, timeout=120, interval=1,
                 what="the interactive pool to consume again, by itself")
        status, body = wait_for(lambda: (r := post_json(f"{tier.edge}/api/cities/{city.pk}/refresh")) and r[0] == 202
                                and r, timeout=60, interval=1, what="clicks to be accepted again")
    wait_for(lambda: TaskResult.objects.filter(task_id=body["task_id"], status="SUCCESS").exists(), timeout=60,
             what="the accepted click's fetch")


def _start_summary(tier, key: str, day) -> int:
    """POST a daily summary start (published to bulk, a quorum lane); its HTTP status."""
    request = urllib.request.Request(f"{tier.edge}/api/etl/daily-summary?day={day}", data=b"", method="POST",
                                     headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_without_a_majority_quorum_lanes_stop_and_doctor_says_why_then_all_resumes(cluster, on_cluster, sim):
    env = on_cluster.env
    _, key = issue_key("majority-test", rate_limit_per_minute=1000)
    yesterday = timezone.now().date() - timedelta(days=1)
    with web_tier(env) as tier:
        with majority_lost(cluster):
            # The operator's own configuration (every node listed) is what doctor and the API run with.
            doctor = _manage(env, "doctor", "--json")
            findings = {f["check"]: f for f in map(json.loads, doctor.stdout.splitlines())}
            assert doctor.returncode == 1, doctor.stdout
            assert "broker nodes" in findings, doctor.stdout
            assert findings["broker nodes"]["status"] == "fail", findings["broker nodes"]
            assert "no majority" in findings["broker nodes"]["saw"]
            # The quorum lane accepts nothing: the surviving node cannot confirm a message alone, so no 202.
            assert _start_summary(tier, key, yesterday) == 503
            assert not DailySummaryRun.objects.filter(day=yesterday).exists(), "a refused start leaves no claim"
        # Everything resumes without intervention: the same start is accepted and runs, a refresh runs to its end.
        wait_for(lambda: _start_summary(tier, key, yesterday) == 202, timeout=60, interval=1,
                 what="the quorum lane to accept again")
    make_cities(40)
    wait_for(lambda: all(cluster.consumers(queue) >= 1 for queue in POOLS), timeout=120, interval=1,
             what="the pools to consume again")
    summary = wait_for_run(_refresh(env).pk)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (40, 0)
    run = DailySummaryRun.objects.get(day=yesterday)
    wait_for(lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(), timeout=120,
             what="the accepted summary to finish")


def test_a_poison_message_is_dead_lettered_by_the_cluster_and_replayed_after_a_leader_change(cluster, on_cluster,
                                                                                             sim):
    pools, env = on_cluster, on_cluster.env
    pools.start(BULK.name, concurrency=1)
    make_cities(5)
    sim.configure(latency_ms=500, fixed_time=FROZEN)
    run = _refresh(env)
    # Every delivery of the one batch is killed mid-request; the quorum queue counts the returns.
    poison_one_batch(pools, lambda: sim.stats()["requests"])
    (letter,) = wait_for(lambda: _dead_letters(env), timeout=60, what="the dead letter")
    assert letter["lane"] == BULK.name
    assert "crashed its worker on every delivery" in letter["why"]
    assert sim.stats()["requests"] == DELIVERY_LIMIT, "the last delivery is refused before the provider"
    assert wait_for_run(run.pk)["cities_failed"] == 5
    # The dead letters are replicated: with their queue's leader gone, another node hands them back.
    cluster.kill(cluster.leader(DEAD_LETTER_QUEUE.name))
    sim.configure(latency_ms=0, fixed_time=FROZEN)
    replayed = _manage(env, "deadletters", "replay", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    wait_for(lambda: WeatherData.objects.count() == 5, timeout=90, what="the replayed batch")
    assert applied_twice() == 0
