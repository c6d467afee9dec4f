"""Work applied twice: units of work whose effect the ledger shows committed by more than one execution."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone

from weather import effects

from .findings import FAIL, OK, WORK_TWICE, Context, Finding

# The ledger read on every ops page and scrape: a day is cheap to group (index on kind and unit)
# and long enough that a unit applied twice is seen by the next operator to look.
WINDOW = timedelta(days=1)
# Units named in a failing finding; the ledger holds the rest.
NAMED = 5


def applied_once(context: Context) -> Iterator[Finding]:
    """Every unit in the last day's ledger (a reading slot, a batch, a run, a summary) applied by one execution."""
    if not effects.enabled():
        yield Finding(WORK_TWICE, "effects ledger", OK, "the ledger is off (EFFECTS_LEDGER=false): nothing is counted")
        return
    twice = effects.applied_twice(since=timezone.now() - WINDOW)
    if not twice:
        yield Finding(WORK_TWICE, "effects ledger", OK, "no unit of work applied twice in the last day")
        return
    named = ", ".join(f"{kind} {unit} ({times} times)" for (kind, unit), times in sorted(twice.items())[:NAMED])
    yield Finding(WORK_TWICE, "effects ledger", FAIL,
                  f"{len(twice)} unit(s) of work applied more than once in the last day: {named}",
                  "an idempotency key no longer holds: the ledger's rows for these units (admin: Effects, search "
                  "the unit) name the tasks, tries, deliveries, hosts and pids that applied them; find what "
                  "changed in that write")
