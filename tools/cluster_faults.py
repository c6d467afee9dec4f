"""The fault report's cluster scenarios: real pools on a three-node test cluster (tools/rabbit_cluster.py).

Scenarios (loopback only, each bounded in time):
  leader-kill       SIGKILL the node leading the bulk quorum queue during a refresh
  election-publish  daily-summary starts published (as the API does) while bulk elects a new leader
  majority-loss     two of three nodes stopped for 10 s during a refresh, then started again
  poison            one bulk batch killed on each delivery until the broker dead-letters it, then replayed

Columns: trials (faults injected, or publishes tried), accepted (batches enqueued, or
starts confirmed by the cluster), refused (starts answered 503), completed, lost
(accepted but never completed), units applied twice (the effects ledger), cities refreshed and failed,
dead letters the broker made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HEADERS = ["scenario", "trials", "accepted", "refused", "completed", "lost", "applied twice", "cities_ok",
           "cities_failed", "dead_letters"]
PUBLISHES = 20


def run(cluster: Any, cities: int, latency_ms: float, log_dir: Path, sim: Any, server_url: str,
        fresh: Callable[[int], None]) -> list[list[object]]:
    """Every cluster scenario in turn, with pools on `cluster`; one row each."""
    import os

    from celery.result import AsyncResult
    from django.db import transaction

    from routing import BULK, LANE_NAMES
    from routing.broker import BrokerUnavailableError
    from tools.faults import kill_bulk_leader, majority_lost, outcome, poison_one_batch
    from tools.harness import WorkerPools, run_summary, wait_for, wait_for_run
    from weather.dispatch import enqueue_daily_summary
    from weather.models import WeatherData
    from weather.ops.deadletters import list_dead_letters, replay
    from weather.tasks import update_all_weather_data

    env = {**os.environ, "WEATHER_API_URL": server_url, "PYTHONUNBUFFERED": "1", "BROKER_HEARTBEAT_S": "4"}
    pools = WorkerPools(env, log_dir, consumers=cluster.consumers)

    def refresh_row(name: str, trials: int, run_id: int, dead_letters: int = 0) -> list[object]:
        wait_for_run(run_id, timeout=300, what=f"{name}: the refresh to finish")
        counted = outcome(run_id)
        return [name, trials, counted.enqueued, 0, counted.completed, counted.lost, counted.applied_twice,
                counted.cities_ok, counted.cities_failed, dead_letters]

    def start_refresh(batches_first: int = 3) -> int:
        run_id = update_all_weather_data.delay().get(timeout=60)["run_id"]
        wait_for(lambda: (s := run_summary(run_id)) and s["batches_done"] >= batches_first, timeout=120)
        return run_id

    def whole_again() -> None:
        for node in cluster.nodes:
            if node not in cluster.running():
                cluster.start(node)
        cluster.wait_until_formed()
        for lane in LANE_NAMES:
            wait_for(lambda lane=lane: cluster.consumers(lane) >= 1, timeout=120, interval=1, what=f"{lane} back")

    rows = []
    try:
        for lane in LANE_NAMES:
            pools.start(lane)

        fresh(cities)
        sim.configure(latency_ms=latency_ms)
        run_id = start_refresh()
        kill_bulk_leader(cluster)
        rows.append(refresh_row("leader-kill", 1, run_id))
        whole_again()

        fresh(cities)
        accepted, refused = [], 0
        kill_bulk_leader(cluster)
        for days_ago in range(1, PUBLISHES + 1):
            try:
                with transaction.atomic():
                    enqueued = enqueue_daily_summary(date.today() - timedelta(days=days_ago))
                accepted.append(enqueued.task_id)
            except BrokerUnavailableError:
                refused += 1
            time.sleep(0.2)
        done = wait_for(lambda: (n := sum(AsyncResult(t).ready() for t in accepted)) == len(accepted) and n,
                        timeout=300, interval=1, what="every accepted start to finish") if accepted else 0
        rows.append(["election-publish", PUBLISHES, len(accepted), refused, done, len(accepted) - done, 0, "-", "-",
                     0])
        whole_again()

        fresh(cities)
        run_id = start_refresh()
        with majority_lost(cluster):
            time.sleep(10)
        rows.append(refresh_row("majority-loss", 1, run_id))
        whole_again()

        fresh(5)
        pools.start(BULK.name, concurrency=1)
        sim.configure(latency_ms=500)
        run_id = update_all_weather_data.delay().get(timeout=60)["run_id"]
        kills = poison_one_batch(pools, lambda: sim.stats()["requests"])
        letters = wait_for(lambda: list_dead_letters(), timeout=60, what="the dead letter")
        row = refresh_row("poison", kills, run_id, dead_letters=len(letters))
        sim.configure(latency_ms=0)
        replay({letter.task_id for letter in letters})
        wait_for(lambda: WeatherData.objects.count() == 5, timeout=120, what="the replayed batch")
        row[7] = f"{row[7]} (+5 replayed)"
        rows.append(row)
    finally:
        pools.stop_all()
    return rows
