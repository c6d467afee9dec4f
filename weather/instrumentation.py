"""Task metrics fed by Celery signals in every process (publishers and workers); /metrics exposes them.

Worker processes and the web process share counters and histograms through
prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR names a
directory they all see (scripts/run and the tests set it; in docker-compose a
shared volume). `weather.ops.metrics` renders them with the broker's queue gauges.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import datetime
from typing import Any

from celery import signals
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from prometheus_client import Counter, Gauge, Histogram

from routing.routes import lane_of_message
from workers.pools import NEAR_LIMIT_SHARE, POOL_NAME_ENV

from .adapters.prometheus import identify_processes_by

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Each process writes files named by its process id. Containers sharing one
    # volume repeat ids (every pool's first child has the same small pid), and would
    # overwrite each other's counts: the host name makes the name unique.
    identify_processes_by(lambda: f"{socket.gethostname()}-{os.getpid()}")

ENQUEUED_AT_HEADER = "f_brain_enqueued_at"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

TASKS = Counter("f_brain_tasks", "Tasks that ended a run, by lane, task and state", ["lane", "task", "state"])
QUEUE_WAIT = Histogram("f_brain_task_queue_wait_seconds", "From enqueue (or ETA) to start", ["lane"],
                       buckets=LATENCY_BUCKETS)
RUNTIME = Histogram("f_brain_task_runtime_seconds", "Run time of a task", ["lane", "task"], buckets=LATENCY_BUCKETS)
NEAR_SOFT_LIMIT = Counter("f_brain_task_near_soft_limit", "Runs that took most of their pool's soft time limit",
                          ["lane", "task", "soft_limit_seconds"])
# When the last such run ended (epoch seconds), so doctor can say "recently" where a counter says "ever";
# the latest over every process, the ones that have exited included.
NEAR_SOFT_LIMIT_LAST = Gauge("f_brain_task_near_soft_limit_last_seconds",
                             "When a run last took most of its pool's soft time limit", ["lane", "task"],
                             multiprocess_mode="max")
# Connections opened, by the pool a process serves ("none" for web, beat and commands): a child that
# reconnects for every task (Celery's default around each one) shows here as one connection a task.
DB_CONNECTIONS = Counter("f_brain_database_connections", "Database connections opened, by pool", ["pool"])

_started: dict[str, float] = {}

@signals.before_task_publish.connect
def stamp_enqueue_time(headers: dict | None = None, **_: Any) -> None:
    """Record when each message (and each retry) was published."""
    if headers is not None:
        headers[ENQUEUED_AT_HEADER] = time.time()


@signals.task_prerun.connect
def observe_queue_wait(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Enqueue-to-start, counted from the ETA for delayed messages."""
    now = time.time()
    _started[task_id] = time.perf_counter()
    enqueued = getattr(task.request, ENQUEUED_AT_HEADER, None)
    if not isinstance(enqueued, (int, float)):
        return
    eta = getattr(task.request, "eta", None)
    if isinstance(eta, str):
        with contextlib.suppress(ValueError):
            enqueued = max(enqueued, datetime.fromisoformat(eta).timestamp())
    QUEUE_WAIT.labels(lane_of_message(task.name, task.request.delivery_info)).observe(max(0.0, now - enqueued))


@signals.task_postrun.connect
def observe_run(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    """Run time and final state of one run (RETRY counts as a state of its own)."""
    started = _started.pop(task_id, None)
    lane = lane_of_message(task.name, task.request.delivery_info)
    if started is not None:
        elapsed = time.perf_counter() - started
        RUNTIME.labels(lane, task.name).observe(elapsed)
        # The limit this worker runs with (the launcher sets it from its pool), not a registry's guess.
        soft_limit = task.app.conf.task_soft_time_limit
        if soft_limit and elapsed >= soft_limit * NEAR_LIMIT_SHARE:
            NEAR_SOFT_LIMIT.labels(lane, task.name, f"{soft_limit:g}").inc()
            NEAR_SOFT_LIMIT_LAST.labels(lane, task.name).set(time.time())
    TASKS.labels(lane, task.name, state or "UNKNOWN").inc()


@receiver(connection_created)
def count_connection(**_: Any) -> None:
    """One more database connection opened by this process."""
    DB_CONNECTIONS.labels(os.environ.get(POOL_NAME_ENV) or "none").inc()


# The metrics of this module, for a registry outside multiprocess mode.
TASK_METRICS = (TASKS, QUEUE_WAIT, RUNTIME, NEAR_SOFT_LIMIT, NEAR_SOFT_LIMIT_LAST, DB_CONNECTIONS)
