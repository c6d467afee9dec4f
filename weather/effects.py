"""The effects ledger: record, with the work, which execution committed each unit; count what was applied twice."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from celery import current_task
from django.conf import settings
from django.db import transaction
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


def enabled() -> bool:
    """Whether writes are recorded (EFFECTS_LEDGER)."""
    return settings.EFFECTS_LEDGER


# The ledger rows of the shared transaction in progress, inserted together just before it commits.
_pending: ContextVar[list[Effect] | None] = ContextVar("effects_pending", default=None)


@contextlib.contextmanager
def shared_transaction() -> Iterator[None]:
    """The transaction a write and its ledger rows commit in; none when the ledger is off (each statement alone).

    The rows recorded inside it go in one INSERT at its end: a batch's readings and its
    completion cost one statement of ledger, not one each.
    """
    if not enabled():
        yield
        return
    with transaction.atomic():
        outer = _pending.get()
        rows: list[Effect] = []
        token = _pending.set(rows)
        try:
            yield
        finally:
            _pending.reset(token)
        if outer is not None:
            outer.extend(rows)  # nested: the outer transaction inserts them
        elif rows:
            Effect.objects.bulk_create(rows, batch_size=1000)


def record(kind: Effect.Kind, outcomes: Iterable[tuple[str, bool]]) -> int:
    """One ledger row per (unit, applied) for the running execution, written with the shared transaction's work."""
    if not enabled():
        return 0
    who = execution()
    rows = [Effect(kind=kind, unit=unit, applied=applied, **who) for unit, applied in outcomes]
    pending = _pending.get()
    if pending is not None:
        pending.extend(rows)
    else:
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
