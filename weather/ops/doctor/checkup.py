"""Every doctor check in the order an operator works through them, and one cached run for the page and metrics."""

from __future__ import annotations

import threading
import time

from . import execution, ledger, periodic, slowness
from .findings import NOT_EXECUTED, NOT_TRIGGERED, STUCK_OR_SLOW, WORK_TWICE, Check, Finding, run_checks

CHECKS: tuple[tuple[str, Check], ...] = (
    (NOT_EXECUTED, execution.broker),
    (NOT_EXECUTED, execution.consumers),
    (NOT_EXECUTED, execution.routes),
    (NOT_EXECUTED, execution.task_lists),
    (STUCK_OR_SLOW, slowness.wait_against_run),
    (STUCK_OR_SLOW, slowness.near_soft_limit),
    (STUCK_OR_SLOW, slowness.stuck_starts),
    (STUCK_OR_SLOW, slowness.dead_letters),
    (STUCK_OR_SLOW, slowness.provider),
    (NOT_TRIGGERED, periodic.beat_alive),
    (NOT_TRIGGERED, periodic.entries),
    (NOT_TRIGGERED, periodic.code_and_database),
    (NOT_TRIGGERED, periodic.timezones),
    (WORK_TWICE, ledger.applied_once),
)

# The ops page and every scrape would otherwise each ping the pools; one run serves them for this long.
CACHE_SECONDS = 15.0
_cache: dict[str, object] = {"at": 0.0, "findings": []}
_lock = threading.Lock()


def examine(quick: bool = False) -> list[Finding]:
    """Run every check now; `quick` skips the backlog-growth sample (a second's wait)."""
    return run_checks(CHECKS, quick=quick)


def forget_findings() -> None:
    """Drop the cached run: the next page or scrape runs the checks afresh."""
    with _lock:
        _cache["at"] = 0.0


def recent_findings() -> list[Finding]:
    """A quick run, reused for CACHE_SECONDS (the ops page and /metrics)."""
    with _lock:
        if time.monotonic() - float(_cache["at"]) > CACHE_SECONDS:  # type: ignore[arg-type]
            _cache["findings"] = examine(quick=True)
            _cache["at"] = time.monotonic()
        return list(_cache["findings"])  # type: ignore[arg-type]
