"""What an operator needs to see: lanes with depth, consumers and pool settings, outcomes, schedules, dead letters."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, LANES, TASK_LANES
from routing.broker import queue_states
from weather import jobs  # noqa: F401  (defines the Django tasks: listed and counted on their lanes)
from weather.lanetasks.runner import registered_lanes
from workers.pools import load_pools

RECENT = timedelta(hours=1)
RECENT_ROWS = 500
# The lane cards' throughput chart: tasks finished in each of these slices of the last hour.
SLICE = timedelta(minutes=5)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)


def _recent_outcomes(task_names: list[str]) -> dict:
    since = timezone.now() - RECENT
    rows = list(
        TaskResult.objects.filter(task_name__in=task_names, date_done__gte=since)
        .order_by("-date_done")
        .values_list("status", "date_started", "date_done")[:RECENT_ROWS]
    )
    durations = [(done - started).total_seconds() for status, started, done in rows
                 if status == "SUCCESS" and started and done]
    return {
        "window_seconds": int(RECENT.total_seconds()),
        "states": dict(Counter(status for status, _, _ in rows)),
        "duration_p50_s": _percentile(durations, 0.5),
        "duration_p95_s": _percentile(durations, 0.95),
    }


def throughput(task_names: list[str], now: datetime | None = None) -> list[int]:
    """Tasks of these names that finished in each SLICE of the last hour, oldest first (counted in the database)."""
    now = now or timezone.now()
    slices = int(RECENT / SLICE)
    since = now - slices * SLICE
    counts = [0] * slices
    for row in (TaskResult.objects.filter(task_name__in=task_names, date_done__gte=since, date_done__lt=now)
                .annotate(minute=TruncMinute("date_done")).values("minute").annotate(done=Count("id"))):
        index = min(slices - 1, max(0, int((row["minute"] - since) / SLICE)))
        counts[index] += row["done"]
    return counts


def _schedules() -> list[dict]:
    now = timezone.now()
    entries = []
    for task in PeriodicTask.objects.select_related("crontab", "interval").order_by("name"):
        schedule = task.schedule
        next_run = None
        if task.enabled and schedule is not None:
            last = task.last_run_at or now
            next_run = (now + schedule.remaining_estimate(last)).isoformat()
        entries.append({
            "name": task.name, "task": task.task, "enabled": task.enabled,
            "schedule": str(task.crontab or task.interval or ""),
            "last_run_at": task.last_run_at.isoformat() if task.last_run_at else None,
            "next_run_at": next_run, "expire_seconds": task.expire_seconds,
        })
    return entries


def lanes_status() -> dict:
    """Everything /ops/ shows, read from the broker, the registry and the result backend.

    Raises BrokerUnavailableError when the broker cannot be asked.
    """
    pools = load_pools()
    states = queue_states()
    dead = states[DEAD_LETTER_QUEUE.name]
    lanes = []
    for lane in LANES:
        state = states[lane.name]
        pool = next(p for p in pools.values() if lane.name in p.queues)
        tasks = sorted(name for name, target in {**TASK_LANES, **registered_lanes()}.items() if target == lane.name)
        lanes.append({
            "lane": lane.name,
            "purpose": lane.purpose,
            "exists": state.exists,
            "depth": state.messages,
            "consumers": state.consumers,
            # What an autoscaler on the backlog asks for (KEDA's ScaledObject, deploy/k8s/).
            "desired_replicas": pool.desired_replicas(state.messages),
            "tasks": [name for name in tasks if not name.startswith("celery.")],
            "pool": {k: v for k, v in dataclasses.asdict(pool).items() if k != "name"},
            "recent": _recent_outcomes(tasks),
            "throughput": throughput(tasks),
        })
    return {
        "lanes": lanes,
        "dead_letter": {"depth": dead.messages, "exists": dead.exists},
        "schedules": _schedules(),
        "generated_at": timezone.now().isoformat(),
    }
