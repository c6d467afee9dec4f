"""The periodic entries in code (weather/schedules.py) against those in the database, and applying the code's.

The rule: beat seeds an entry the database lacks and never overwrites one it has, so
an admin edit survives a restart. An edit to weather/schedules.py therefore reaches a
deployed database only when an operator says so: `manage.py schedules` shows each
entry that differs (exit 1), `manage.py schedules --apply` writes the code's, and
doctor warns while they disagree. The code is the record; an admin edit is for the
moment, until it is made in code too.

What the code would write is found by writing it in a transaction that is rolled back:
django-celery-beat's own `ModelEntry.from_entry` does the writing, so the comparison
can never drift from how beat seeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from celery import current_app
from django.db import transaction
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

# The columns an entry of CELERY_BEAT_SCHEDULE sets (django-celery-beat's from_entry), and the schedule.
COMPARED = ("task", "schedule", "args", "kwargs", "queue", "exchange", "routing_key", "priority", "headers",
            "expire_seconds")
MISSING, DIFFERS = "missing", "differs"


@dataclass(frozen=True)
class EntryDifference:
    """One entry of the code that the database lacks, or holds otherwise: each field as (database, code)."""

    name: str
    kind: str
    fields: dict[str, tuple[str, str]]

    def describe(self) -> str:
        """One line for a person."""
        if self.kind == MISSING:
            return f"{self.name}: not in the database (beat seeds it at its next start, or --apply now)"
        changes = "; ".join(f"{field} {database} in the database, {code} in code"
                            for field, (database, code) in self.fields.items())
        return f"{self.name}: {changes}"


def code_entries() -> dict[str, dict]:
    """The entries beat seeds: the settings' CELERY_BEAT_SCHEDULE (weather/schedules.py)."""
    return dict(current_app.conf.beat_schedule or {})


def _columns(task: PeriodicTask) -> dict[str, str]:
    """The compared columns of a stored entry, as text; its schedule as the admin shows it."""
    values = {field: str(getattr(task, field)) for field in COMPARED if field != "schedule"}
    values["schedule"] = str(task.crontab or task.interval or task.solar or task.clocked)
    return values


def _as_written(entries: dict[str, dict]) -> dict[str, dict[str, str]]:
    """What beat's seeding would store for each entry, found by storing it and rolling back."""
    written: dict[str, dict[str, str]] = {}
    with transaction.atomic():
        for name, entry in entries.items():
            written[name] = _columns(ModelEntry.from_entry(name, app=current_app, **entry).model)
        transaction.set_rollback(True)
    return written


def differences(names: Iterable[str] | None = None) -> list[EntryDifference]:
    """Each code entry (or each of `names`) the database lacks or holds otherwise, by name."""
    entries = code_entries()
    if names is not None:
        entries = {name: entries[name] for name in names}
    stored = {task.name: _columns(task) for task in
              PeriodicTask.objects.filter(name__in=list(entries)).select_related(
                  "crontab", "interval", "solar", "clocked")}
    found = []
    for name, code in sorted(_as_written(entries).items()):
        if name not in stored:
            found.append(EntryDifference(name, MISSING, {}))
            continue
        changed = {field: (stored[name][field], code[field])
                   for field in COMPARED if stored[name][field] != code[field]}
        if changed:
            found.append(EntryDifference(name, DIFFERS, changed))
    return found


class UnknownEntryError(LookupError):
    """A name given to apply that weather/schedules.py does not declare."""


def apply(names: Iterable[str] | None = None) -> list[EntryDifference]:
    """Write the code's version of each differing entry (or of `names`); what was changed.

    Enabled state and last run are kept: an entry disabled in the admin stays disabled.
    django-celery-beat marks the change, so a running beat reloads its entries.
    """
    entries = code_entries()
    if names is not None:
        unknown = sorted(set(names) - set(entries))
        if unknown:
            raise UnknownEntryError(f"not in weather/schedules.py: {', '.join(unknown)}; known: "
                                    f"{', '.join(sorted(entries))}")
    pending = differences(names)
    with transaction.atomic():
        for difference in pending:
            ModelEntry.from_entry(difference.name, app=current_app, **entries[difference.name])
    return pending
