"""The nemesis's checker: the rules a run's whole history must keep, each one a count that fails when broken.

The history is what the workload saw (every API answer) and what the run left in the
database and the broker: the result backend, the effects ledger, the quota grants, the
claims and crash rows, the refresh runs and the dead letters. The rules are pure
functions of it, so a test can hand each one a history that breaks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tools.faults import busiest
from tools.workload import Answer

# States a task ends in. REVOKED: discarded by its expiry, on purpose.
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
QUOTA_WINDOWS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
# What a client may be answered: accepted, told to slow down (its own rate limit), or told to come back (503).
EXPECTED_STATUSES = frozenset({202, 429, 503})


@dataclass(frozen=True)
class Violation:
    """One rule broken, and what broke it."""

    rule: str
    detail: str


@dataclass
class History:
    """What a run left behind, as the checker reads it."""

    answers: list[Answer] = field(default_factory=list)
    # Task id of each accepted request -> the state the result backend holds for it (absent: none).
    states: dict[str, str] = field(default_factory=dict)
    # (kind, unit) -> times its effect was committed, for the units committed more than once.
    applied_twice: dict[tuple[str, str], int] = field(default_factory=dict)
    grants: list[tuple[datetime, int]] = field(default_factory=list)
    quota_limits: dict[str, int] = field(default_factory=dict)
    pending_claims: int = 0
    crash_rows: set[str] = field(default_factory=set)
    unfinished_runs: dict[int, int] = field(default_factory=dict)
    dead_letters: set[str] = field(default_factory=set)
    poison: set[str] = field(default_factory=set)


def answer_violations(answers: Iterable[Answer]) -> list[Violation]:
    """No 5xx but a 503 that says when to come back; nothing a valid request should not get."""
    found = []
    for answer in answers:
        if answer.status == 503 and not answer.retry_after:
            found.append(Violation("503 with Retry-After", f"a 503 without Retry-After: {answer.body}"))
        elif answer.status not in EXPECTED_STATUSES:
            found.append(Violation("no 5xx but a 503", f"answered {answer.status}: {str(answer.body)[:200]}"))
    return found


def accepted_task_ids(answers: Iterable[Answer]) -> list[str]:
    """The task id of every 202."""
    return [answer.body["task_id"] for answer in answers if answer.status == 202]


def unfinished_violations(answers: Iterable[Answer], states: dict[str, str]) -> list[Violation]:
    """Every 202 reaches a final state."""
    return [Violation("every 202 ends", f"task {task_id} is {states.get(task_id, 'unknown to the result backend')}")
            for task_id in accepted_task_ids(answers) if states.get(task_id) not in FINAL_STATES]


def quota_violations(grants: Iterable[tuple[datetime, int]], limits: dict[str, int]) -> list[Violation]:
    """In no sliding window were more locations granted than the quota allows (0: no limit)."""
    grants = list(grants)
    found = []
    for window, span in QUOTA_WINDOWS.items():
        limit = limits.get(window, 0)
        most = busiest(grants, span)
        if limit and most > limit:
            found.append(Violation("quota never exceeded", f"{most} locations in one {window}, limit {limit}"))
    return found


def ledger_violations(applied_twice: dict[tuple[str, str], int]) -> list[Violation]:
    """Each unit's effect committed exactly once."""
    return [Violation("applied once", f"{kind} {unit} applied {times} times")
            for (kind, unit), times in sorted(applied_twice.items())]


def leftover_violations(history: History) -> list[Violation]:
    """No claim or crash row left behind, no run left unfinished (a poison message keeps its crash row)."""
    found = []
    if history.pending_claims:
        found.append(Violation("no claim left", f"{history.pending_claims} pending fetch claims remain"))
    for task_id in sorted(history.crash_rows - history.poison):
        found.append(Violation("no crash row left", f"task {task_id} still has counted starts"))
    for run_id, pending in sorted(history.unfinished_runs.items()):
        found.append(Violation("every run finishes", f"refresh run {run_id} has {pending} batches pending"))
    return found


def dead_letter_violations(dead: set[str], poison: set[str]) -> list[Violation]:
    """Dead letters for exactly the poison messages the workload sent: no other, and none of those lost."""
    found = [Violation("dead letters only for poison", f"task {task_id} was dead-lettered")
             for task_id in sorted(dead - poison)]
    found += [Violation("poison dead-lettered", f"poison task {task_id} never reached the dead letters")
              for task_id in sorted(poison - dead)]
    return found


def check(history: History) -> list[Violation]:
    """Every rule, over the whole history."""
    return [
        *answer_violations(history.answers),
        *unfinished_violations(history.answers, history.states),
        *ledger_violations(history.applied_twice),
        *quota_violations(history.grants, history.quota_limits),
        *leftover_violations(history),
        *dead_letter_violations(history.dead_letters, history.poison),
    ]


def read_history(answers: list[Answer], poison: set[str], dead_letters: set[str]) -> History:
    """The history as the database holds it now (call it once the run has settled)."""
    from django.conf import settings
    from django_celery_results.models import TaskResult

    from weather import effects
    from weather.models import PendingFetch, QuotaGrant, RefreshBatch, TaskAttempt

    accepted = accepted_task_ids(answers)
    unfinished = RefreshBatch.objects.filter(status=RefreshBatch.Status.PENDING).values_list("run_id", flat=True)
    runs: dict[int, int] = {}
    for run_id in unfinished:
        runs[run_id] = runs.get(run_id, 0) + 1
    return History(
        answers=answers,
        states=dict(TaskResult.objects.filter(task_id__in=accepted).values_list("task_id", "status")),
        applied_twice=effects.applied_twice(),
        grants=list(QuotaGrant.objects.values_list("granted_at", "locations")),
        quota_limits={"minute": settings.WEATHER_QUOTA_PER_MINUTE, "hour": settings.WEATHER_QUOTA_PER_HOUR,
                      "day": settings.WEATHER_QUOTA_PER_DAY},
        pending_claims=PendingFetch.objects.count(),
        crash_rows=set(TaskAttempt.objects.values_list("task_id", flat=True)),
        unfinished_runs=runs,
        dead_letters=dead_letters,
        poison=poison,
    )
