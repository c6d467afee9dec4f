"""What the provider and the clients may use: the provider's quota, its grants, and per-client request windows."""

from __future__ import annotations

from django.db import models


class ProviderQuota(models.Model):
    """The single row every quota reservation locks; it also holds a pause the provider asked for."""

    paused_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"provider quota (paused until {self.paused_until})" if self.paused_until else "provider quota"


class QuotaGrant(models.Model):
    """Locations granted to one provider request; the sliding windows sum these."""

    granted_at = models.DateTimeField(db_index=True)
    locations = models.PositiveIntegerField()
    consumer = models.CharField(max_length=16)

    class Meta:
        ordering = ["granted_at"]

    def __str__(self) -> str:
        return f"{self.locations} locations for {self.consumer} at {self.granted_at:%H:%M:%S}"


class RateWindow(models.Model):
    """The times (epoch seconds) of one client's requests accepted within the last window (weather/ratelimit.py)."""

    key = models.CharField(max_length=128, unique=True)
    hits = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.key}: {len(self.hits)} recent"
