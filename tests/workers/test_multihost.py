"""Pool replicas on several hosts: test hosts in network namespaces of their own, real RabbitMQ and PostgreSQL.

The hosts reach the machine's services only through the harness's relay, so a
host cut off the network is silent to the broker as a vanished machine is.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from celery import current_app as app
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count
from django.test import Client

from routing.broker import failure_detection_bound
from tests.conftest import require
from tests.factories import make_cities
from tools.faults import FROZEN, applied_twice, busiest_minute
from tools.harness import ROOT, purge_lanes, queue_consumers, wait_for, wait_for_run
from tools.testhosts import NetnsHosts, namespaces_possible, netns_hosts
from weather.models import Effect, QuotaGrant, RefreshBatch, RefreshRun, WeatherData
from weather.tasks import update_all_weather_data

pytestmark = [pytest.mark.integration]

# Short heartbeats so a cut is noticed in seconds; the bound scales with them (settings).
HEARTBEAT_S = 4
FAILURE_DETECTION_S = failure_detection_bound(HEARTBEAT_S)
HOST_ENV = {"BROKER_HEARTBEAT_S": str(HEARTBEAT_S), "WEATHER_BATCH_SIZE": "20"}


@pytest.fixture
def hosts(live, tmp_path) -> Iterator[NetnsHosts]:
    """Two test hosts; the machine's own bulk pool stopped, so only their replicas run batches."""
    require(namespaces_possible(), "the multi-host tests (network namespaces)")
    live.stop("bulk")
    purge_lanes()
    try:
        with netns_hosts(2, live.env, tmp_path / "hosts") as made:
            yield made
    finally:
        purge_lanes()
        live.start("bulk")


def _manage(hosts: NetnsHosts, *args: str) -> subprocess.CompletedProcess:
    """A manage.py command as an operator on the machine runs it, with the hosts' broker account."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=hosts.env, capture_output=True,
                          text=True, timeout=60)


def _running_nothing(node: str) -> bool:
    """Whether the worker answers and runs no task (asked through the broker, as `celery inspect active`)."""
    active = app.control.inspect(destination=[node], timeout=2).active() or {}
    return node in active and not active[node]


def _refresh(cities: int) -> RefreshRun:
    make_cities(cities)
    run_id = update_all_weather_data.delay().get(timeout=60)["run_id"]
    return RefreshRun.objects.get(pk=run_id)



def test_the_failure_detection_bound_follows_the_heartbeat():
    assert failure_detection_bound(settings.BROKER_HEARTBEAT_S) == settings.BROKER_FAILURE_DETECTION_S
    assert settings.CELERY_BROKER_HEARTBEAT == 0, "web and beat send no heartbeats (only a worker's loop does)"


def test_bulk_replicas_on_two_hosts_share_a_refresh(hosts, sim):
    sim.configure(latency_ms=300, fixed_time=FROZEN)
    quota = {"WEATHER_QUOTA_PER_MINUTE": "500", "WEATHER_QUOTA_INTERACTIVE_RESERVE": "0.1"}
    for host in (1, 2):
        hosts.start(host, "bulk", extra_env={**HOST_ENV, **quota}, concurrency=2)
    # Every lane counts the consumers of every host.
    assert queue_consumers("bulk") == 2
    check = _manage(hosts, "topology", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "bulk         exists=True messages=0 consumers=2" in check.stdout
    staff = Client()
    staff.force_login(User.objects.create_user("ops-reader", is_staff=True))
    lanes = {lane["lane"]: lane for lane in staff.get("/api/ops/queues").json()["lanes"]}
    assert lanes["bulk"]["consumers"] == 2

    run = _refresh(400)
    summary = wait_for_run(run.pk, timeout=120)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (400, 0), summary
    workers = dict(RefreshBatch.objects.filter(run=run).values_list("worker").annotate(n=Count("id")))
    assert set(workers) == {"bulk@fbh1", "bulk@fbh2"}, workers
    # Each city's observation applied once, and the quota's bulk share never exceeded in any minute.
    assert WeatherData.objects.count() == 400
    assert applied_twice() == 0
    assert busiest_minute(QuotaGrant.objects.values_list("granted_at", "locations")) <= 450


def test_a_host_cut_off_mid_refresh_loses_nothing_and_comes_back_by_itself(hosts, sim):
    # One observation slot: what host 1 runs again after the link returns meets what host 2 stored.
    sim.configure(latency_ms=1500, fixed_time=FROZEN)
    # Host 1 alone first, so it holds batches (one running, the rest prefetched) when it is cut off.
    hosts.start(1, "bulk", extra_env=HOST_ENV, concurrency=1, prefetch_multiplier=4)
    run = _refresh(200)
    # Its first batch at the provider (1.5 s a request), the next ones prefetched: cut now. (Not by
    # the queue's unacknowledged count: a quorum queue reports it seconds late.)
    wait_for(lambda: sim.stats()["requests"] >= 1, timeout=30, what="host 1 to hold batches")
    hosts.cut(1)
    hosts.start(2, "bulk", extra_env=HOST_ENV, concurrency=2)
    # Host 2 runs what nobody held at once; what host 1 held (its running batch and the prefetched
    # ones) comes back only when the broker notices the silence by the missing heartbeats. Every
    # batch done by host 2 means all of it was redelivered. (How long that takes is measured by
    # tools/cluster_faults.py, not asserted here.)
    summary = wait_for_run(run.pk, timeout=FAILURE_DETECTION_S + 60)
    assert (summary["cities_refreshed"], summary["cities_failed"]) == (200, 0), summary
    assert set(RefreshBatch.objects.filter(run=run).values_list("worker", flat=True)) == {"bulk@fbh2"}
    assert WeatherData.objects.count() == 200

    # The link returns: host 1 reconnects by itself, and what it ran again changes nothing in effect.
    hosts.reconnect(1)
    wait_for(lambda: queue_consumers("bulk") == 2, timeout=90, interval=0.5, what="host 1 to consume again")
    wait_for(lambda: _running_nothing("bulk@fbh1"), timeout=60, interval=0.5,
             what="host 1 to have finished or dropped what it held")
    assert WeatherData.objects.count() == 200
    assert applied_twice() == 0
    applied_by = set(Effect.objects.filter(applied=True, kind__in=["reading", "batch"]).values_list("host", flat=True))
    assert applied_by == {"bulk@fbh2"}, "host 1's late copies were discarded, not applied"
    assert set(RefreshBatch.objects.filter(run=run).values_list("status", flat=True)) == {"done"}
    pings = _manage(hosts, "doctor", "--json").stdout
    assert "bulk@fbh1" in pings, pings[-2000:]
    assert "bulk@fbh2" in pings, pings[-2000:]
