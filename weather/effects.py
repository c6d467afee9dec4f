"""The effects ledger: record, with the work, which execution committed each unit; count what was applied twice."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from celery import current_task
from django.db.models import Count, Q, QuerySet

from .guard import delivery_count
from .models import Effect


def reading_unit(city_id: int, observed_at: datetime) -> str:
    """A city's observation slot as the provider reported it (not as it was stored: a broken key must show)."""
    return f"{city_id}@{observed_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def batch_unit(run_id: int, index: int) -> str:
    """One batch of one refresh run."""
    return f"{run_id}/{index}"


def summary_unit(city_id: int, day: date) -> str:
    """A city's summary of one UTC day."""
    return f"{city_id}@{day.isoformat()}"


def execution() -> dict[str, Any]:
    """Who is writing: the running task's id, name, try and delivery, and this host and process."""
    task = current_task
    request = getattr(task, "request", None)
    if task is None or request is None or request.id is None:
        return {"task_id": "", "task_name": "", "attempt": 0, "delivery": 1, "host": socket.gethostname(),
                "pid": os.getpid()}
    returned = delivery_count(request)
    # A quorum queue counts each return (x-delivery-count); a classic queue only flags a redelivery.
    redelivered = bool((request.delivery_info or {}).get("redelivered"))
    return {
        "task_id": request.id,
        "task_name": task.name or "",
        "attempt": request.retries or 0,
        "delivery": returned + 1 if returned else (2 if redelivered else 1),
        "host": request.hostname or socket.gethostname(),
        "pid": os.getpid(),
    }


def record(kind: Effect.Kind, outcomes: Iterable[tuple[str, bool]]) -> int:
    """One ledger row per (unit, applied) for the running execution; call it inside the work's transaction."""
    who = execution()
    rows = [Effect(kind=kind, unit=unit, applied=applied, **who) for unit, applied in outcomes]
    Effect.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


@dataclass(frozen=True)
class KindTally:
    """One kind of unit in the ledger: how many units, executions applied and discarded, and units applied twice."""

    kind: str
    units: int
    applied: int
    discarded: int
    applied_twice: int


def ledger(since: datetime | None = None) -> QuerySet:
    """The ledger's rows, from `since` on."""
    rows = Effect.objects.all()
    return rows if since is None else rows.filter(recorded_at__gte=since)


def applied_twice(since: datetime | None = None) -> dict[tuple[str, str], int]:
    """Each (kind, unit) whose effect was committed more than once, with how many times: empty when all is well."""
    per_unit = (ledger(since).filter(applied=True).values("kind", "unit").annotate(n=Count("id")).filter(n__gt=1)
                .values_list("kind", "unit", "n"))
    return {(kind, unit): n for kind, unit, n in per_unit}


def tally(since: datetime | None = None) -> list[KindTally]:
    """Per kind, the ledger's counts: the table a checker prints."""
    twice: dict[str, int] = {}
    for kind, _unit in applied_twice(since):
        twice[kind] = twice.get(kind, 0) + 1
    rows = (ledger(since).values("kind").annotate(
        n_units=Count("unit", distinct=True), n_applied=Count("id", filter=Q(applied=True)),
        n_discarded=Count("id", filter=Q(applied=False))).order_by("kind"))
    return [KindTally(row["kind"], row["n_units"], row["n_applied"], row["n_discarded"], twice.get(row["kind"], 0))
            for row in rows]
