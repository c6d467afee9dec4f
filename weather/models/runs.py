"""Work in flight: refresh runs and their batches, ETL runs, and the one pending fetch a city may have."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .readings import City


class RefreshRun(models.Model):
    """One refresh of every active city, fanned out as batches on the bulk lane."""

    started_at = models.DateTimeField(default=timezone.now)
    # The dispatching task's id: a redelivered dispatch finds its run instead of starting another.
    task_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # The periodic slot it runs for ("<entry>@<due time>", weather.beat.due_slot): a second message for
    # the same slot (a paused beat resumed, a send repeated) finds this run instead of starting another.
    slot = models.CharField(max_length=240, unique=True, null=True, blank=True)
    batch_size = models.PositiveIntegerField()
    batches_total = models.PositiveIntegerField(default=0)
    cities_total = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"refresh {self.pk} of {self.cities_total} cities at {self.started_at:%Y-%m-%d %H:%M}"

    def summary(self) -> dict:
        """Batches done and cities refreshed or failed so far, from the batch rows."""
        totals = self.batches.aggregate(
            done=models.Count("id", filter=~Q(status=RefreshBatch.Status.PENDING)),
            refreshed=models.Sum("refreshed", default=0),
            failed=models.Sum("failed", default=0),
        )
        return {
            "run_id": self.pk,
            "batches": self.batches_total,
            "batches_done": totals["done"],
            "cities": self.cities_total,
            "cities_refreshed": totals["refreshed"],
            "cities_failed": totals["failed"],
            "finished": totals["done"] == self.batches_total,
        }


class RefreshBatch(models.Model):
    """The outcome of one batch; written with update() so a redelivered batch never counts twice."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(RefreshRun, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    cities = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    refreshed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker that finished it (`<pool>@<host>`): which host ran what, after a failover too.
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="refreshbatch_unique_index")]

    def __str__(self) -> str:
        return f"run {self.run_id} batch {self.index}: {self.status}"


class DailySummaryRun(models.Model):
    """The one running ETL chain of a day; a second start while it runs gets its task id."""

    day = models.DateField(unique=True)
    # The id of the chain's last step: its result says whether the chain has ended.
    task_id = models.CharField(max_length=64, unique=True)
    started_at = models.DateTimeField(default=timezone.now)

    # The field a replaced (stale) claim restamps.
    CLAIMED_AT = "started_at"

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"daily summary of {self.day} as {self.task_id}"


class PendingFetch(models.Model):
    """The one queued-or-running fetch of a city; further requests get its task id."""

    city = models.OneToOneField(City, on_delete=models.CASCADE, related_name="pending_fetch")
    task_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    # The field a replaced (stale) claim restamps.
    CLAIMED_AT = "created_at"

    def __str__(self) -> str:
        return f"fetch of {self.city_id} as {self.task_id}"
