"""The beats: the lease that lets one of them send, and every beat's heartbeat."""

from __future__ import annotations

from django.db import models


class BeatLease(models.Model):
    """The right to send periodic tasks: held by one beat at a time, renewed at each of its ticks."""

    name = models.CharField(max_length=32, unique=True)
    holder = models.CharField(max_length=200, blank=True)
    # Stamped by the database's clock, so beats on hosts whose clocks disagree share one timeline.
    renewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} lease held by {self.holder or 'nobody'}"


class BeatHeartbeat(models.Model):
    """The last tick of each beat process, leader or standby: who is alive, and who leads."""

    instance = models.CharField(max_length=200, unique=True)
    beat_at = models.DateTimeField()
    leading = models.BooleanField(default=False)
    # The timezone this beat schedules in (its CELERY_TIMEZONE): doctor compares every
    # running beat's, not only its own settings.
    timezone = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self) -> str:
        return f"{self.instance} ({'leader' if self.leading else 'standby'}) at {self.beat_at:%H:%M:%S}"
