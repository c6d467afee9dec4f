"""Short writes at a task's ending that wait out a database restart, within a deadline the pool's limits allow."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

# How often a write is tried again while the database is away (a restart or a failover takes seconds).
RETRY_EVERY_S = 0.5


def within_soft_limit(patience_s: float, soft_limit_s: float | None) -> float:
    """`patience_s`, cut to half the running pool's soft time limit: a wait counts against that limit,
    and past it the limit would cut the task short in the middle of its ending."""
    return min(patience_s, soft_limit_s / 2) if soft_limit_s else patience_s


def retried_until(deadline: float, write: Callable[[], T]) -> T:
    """`write()`, tried again on a new connection while the database is away, until `deadline` (monotonic).

    Past the deadline, or inside a caller's transaction (which the outage ended anyway), the error is raised.
    """
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block or time.monotonic() >= deadline:
                raise
            connection.close()  # the next try opens a new connection
            time.sleep(RETRY_EVERY_S)
