"""The fault scenarios' parts, written once: each fault done to real processes, and a refresh run's outcome counted.

Used by the tests that prove each fault (tests/weather/test_faults.py, tests/routing/test_cluster.py)
and by the reports that measure them (tools/fault_report.py, tools/cluster_faults.py), so a test
and its report row are the same scenario. Loopback and the project's own test cluster only.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tools.harness import WorkerPools, broker_ctl, run_summary, wait_for

# The simulator's observation time, frozen: a batch run again writes the same observation, and the
# unique (city, observation) constraint makes a second row impossible rather than merely unlikely.
FROZEN = 1_790_000_000.0
BATCHES_OF_20 = {"WEATHER_BATCH_SIZE": "20"}
# Killing children a dozen times in a minute can cut the same batch short more often than the default
# crash cap; the kill scenarios are about losing nothing, not about the cap.
KILL_ENV = {**BATCHES_OF_20, "TASK_MAX_CRASHES": "20"}
# Thirty per cent of provider answers fail, each a passing fault (500, 429, timeout, a body cut short).
FLAKY_PROVIDER = {"error_rate": 0.075, "rate_limit_rate": 0.075, "timeout_rate": 0.075, "malformed_rate": 0.075,
                  "timeout_sleep_s": 2, "retry_after_s": 0.2, "seed": 7}


def busiest(grants: Iterable[tuple[datetime, int]], span: timedelta) -> int:
    """The most locations granted in any window of `span` ending at a grant (the quota's own sliding windows)."""
    ordered = sorted(grants)
    most = total = start = 0
    for at, locations in ordered:
        total += locations
        while ordered[start][0] <= at - span:
            total -= ordered[start][1]
            start += 1
        most = max(most, total)
    return most


def busiest_minute(grants: Iterable[tuple[datetime, int]]) -> int:
    """The most locations granted in any minute-long window ending at a grant."""
    return busiest(grants, timedelta(minutes=1))


def applied_twice() -> int:
    """Units of work (a reading slot, a batch, a run, a summary day) whose effect the ledger saw committed twice."""
    from weather import effects

    return len(effects.applied_twice())


@dataclass(frozen=True)
class RunOutcome:
    """What became of a refresh run's batches, readings and quota."""

    enqueued: int
    completed: int
    rerun: int
    applied_twice: int
    cities_ok: int
    cities_failed: int
    busiest_minute: int

    @property
    def lost(self) -> int:
        """Batches enqueued that never completed (done or reported failed)."""
        return self.enqueued - self.completed


def outcome(run_id: int) -> RunOutcome:
    """Count the run as it stands: batches, reservations beyond one a batch, units applied twice, the busiest minute."""
    from weather.models import QuotaGrant, RefreshBatch

    batches = RefreshBatch.objects.filter(run_id=run_id)
    enqueued = batches.count()
    summary = run_summary(run_id)
    return RunOutcome(
        enqueued=enqueued,
        completed=batches.exclude(status=RefreshBatch.Status.PENDING).count(),
        rerun=max(0, QuotaGrant.objects.count() - enqueued),
        applied_twice=applied_twice(),
        cities_ok=summary["cities_refreshed"],
        cities_failed=summary["cities_failed"],
        busiest_minute=busiest_minute(QuotaGrant.objects.values_list("granted_at", "locations")),
    )


def kill_mid_refresh(pools: WorkerPools, run_id: int, kills: int, *, children: bool = True, workers: bool = False,
                     pool: str = "bulk", restart_env: dict[str, str] | None = None,
                     every_s: float = 0.6) -> dict[str, int]:
    """SIGKILL the pool's children, whole worker, or both in turn, until each kind was killed `kills` times or the
    run finished; a killed worker is started again with `restart_env`. The kills made, by kind."""
    made = {kind: 0 for kind, on in (("child", children), ("worker", workers)) if on}
    while min(made.values()) < kills and not run_summary(run_id)["finished"]:
        time.sleep(every_s)  # paced: each kill lands on batches the pool took up since the last
        kind = min(made, key=lambda k: (made[k], k != "child"))
        if kind == "child":
            # Children are busy on slow provider requests: a kill lands mid-batch.
            if pools.kill_children(pool):
                made["child"] += 1
        else:
            pools.kill(pool)
            pools.start(pool, extra_env=restart_env or KILL_ENV)
            made["worker"] += 1
    return made


@contextlib.contextmanager
def broker_stopped() -> Iterator[None]:
    """The broker's application stopped (the node stays up; its port goes away, as in a restart), started again."""
    broker_ctl("stop_app")
    try:
        yield
    finally:
        broker_ctl("start_app")


def postgresql(action: str) -> None:
    """Start or stop the machine's PostgreSQL cluster."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def database_stopped() -> Iterator[None]:
    """PostgreSQL stopped (this process's connection closed first), started again."""
    from django.db import connection

    connection.close()
    postgresql("stop")
    try:
        yield
    finally:
        postgresql("start")


def kill_bulk_leader(cluster: Any) -> str:
    """SIGKILL the cluster node leading the bulk quorum queue (its VM, without a word to anyone); the node."""
    from routing import BULK

    leader = cluster.leader(BULK.name)
    cluster.kill(leader)
    return leader


@contextlib.contextmanager
def majority_lost(cluster: Any) -> Iterator[None]:
    """Two of the three nodes stopped, started again."""
    first, second, _ = cluster.nodes
    cluster.stop(first)
    cluster.stop(second)
    try:
        yield
    finally:
        cluster.start_together([first, second])


def poison_one_batch(pools: WorkerPools, requests: Callable[[], int], pool: str = "bulk") -> int:
    """Kill the child running the pool's one batch on each delivery, until the broker's delivery limit is spent."""
    from routing import DELIVERY_LIMIT

    for kill in range(DELIVERY_LIMIT):
        wait_for(lambda n=kill: requests() >= n + 1, timeout=60, what=f"delivery {kill + 1}")
        assert pools.kill_children(pool), "a child is running the batch"
    return DELIVERY_LIMIT
