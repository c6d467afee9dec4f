"""API keys."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ApiKey(models.Model):
    """A client's key to the API's protected operations; only its hash is stored, shown once when created."""

    name = models.CharField(max_length=100, help_text="who or what uses this key")
    # The first characters of the key, stored plain, so a request finds its row by an index.
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    rate_limit_per_minute = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.name} ({self.prefix}..., {state})"
