"""How the pools run: each message's counted starts (the crash guard) and the lanes sampled each minute."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class TaskAttempt(models.Model):
    """Starts of one task message that have not finished: each one past the first is a crash."""

    task_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=200)
    lane = models.CharField(max_length=32, blank=True)
    # Which try of the message (its retry number): each try counts its own starts.
    retries = models.PositiveIntegerField(default=0)
    starts = models.PositiveIntegerField(default=0)
    last_started_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] started {self.starts} times"


class LaneSample(models.Model):
    """A lane's depth and consumers as the leading beat read them from the broker, once a minute (/ops/ charts)."""

    lane = models.CharField(max_length=64)
    sampled_at = models.DateTimeField()
    depth = models.PositiveIntegerField()
    # Unknown on the filesystem transport: no sample, not a 0.
    consumers = models.PositiveIntegerField(null=True, blank=True)
    # The lane's queue-wait histogram so far, cumulative {upper bound: count}, where the beat sees the
    # pools' metric files (null where it does not): two samples' difference is that minute's waits.
    wait_buckets = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["lane", "sampled_at"], name="lane_sample_lane_time")]
        ordering = ["lane", "sampled_at"]

    def __str__(self) -> str:
        return f"{self.lane} at {self.sampled_at:%H:%M}: {self.depth} ready, {self.consumers} consumers"
