"""What a doctor check reports, and running every check of every symptom without one failure stopping the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
# Prometheus gauge values, worst last.
SEVERITY = {OK: 0, WARN: 1, FAIL: 2}

NOT_EXECUTED = "tasks not executed"
STUCK_OR_SLOW = "tasks stuck or slow"
NOT_TRIGGERED = "periodic tasks not triggered"
WORK_TWICE = "work applied twice"
SYMPTOMS = (NOT_EXECUTED, STUCK_OR_SLOW, NOT_TRIGGERED, WORK_TWICE)


@dataclass(frozen=True)
class Finding:
    """One check's verdict: what it saw and, unless all is well, what to do."""

    symptom: str
    check: str
    status: str
    saw: str
    todo: str = ""

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


Check = Callable[["Context"], Iterable[Finding]]


@dataclass
class Context:
    """What several checks share, read once per run."""

    quick: bool = False
    # Set by the broker check, so the checks after it do not each wait for a broker that is away.
    broker_down: bool = False
    # Set when RabbitMQ blocks publishers: a ping or an inspect is a publish, and would hang until the alarm ends.
    broker_blocked: bool = False


def run_checks(checks: Iterable[tuple[str, Check]], quick: bool = False) -> list[Finding]:
    """Every check's findings; a check that crashes is itself a failing finding, and the others still run."""
    context = Context(quick=quick)
    findings: list[Finding] = []
    for symptom, check in checks:
        try:
            findings.extend(check(context))
        except Exception as error:  # a broken check must not hide the others
            log.exception("doctor check %s crashed", check.__name__)
            findings.append(Finding(symptom, check.__name__, FAIL, f"the check itself failed: {error!r}"[:300],
                                    "see the logs; the other checks still ran"))
    return findings
