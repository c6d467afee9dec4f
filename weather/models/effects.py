"""The effects ledger: which execution of which task committed which unit of work, written with the work."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Effect(models.Model):
    """One execution's write of one unit of work: applied when it created the unit's effect, else discarded.

    Written in the transaction that writes the work, so a row exists exactly when the
    work committed. Nothing here is unique: the ledger records what happened, and a
    checker counting applied rows per unit is how a unit applied twice shows up.
    """

    class Kind(models.TextChoices):
        READING = "reading"  # a city's observation slot, stored by a fetch or a batch
        BATCH = "batch"  # a refresh batch reaching done
        RUN = "run"  # a refresh run started by its dispatch message
        SUMMARY = "summary"  # a city's daily summary, loaded by the ETL chain

    kind = models.CharField(max_length=16, choices=Kind.choices)
    unit = models.CharField(max_length=120)
    applied = models.BooleanField()
    task_id = models.CharField(max_length=64, blank=True)
    task_name = models.CharField(max_length=200, blank=True)
    # The message's retry number, and which delivery of that try this was (1 unless the broker handed it back).
    attempt = models.PositiveIntegerField(default=0)
    delivery = models.PositiveIntegerField(default=1)
    host = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(default=0)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "unit"], name="effect_unit_idx"),
            models.Index(fields=["recorded_at", "id"], name="effect_retention_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.unit} {'applied' if self.applied else 'discarded'} by {self.task_id or 'no task'}"
