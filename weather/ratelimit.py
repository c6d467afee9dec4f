"""A fixed-window request limit per client, counted in the database so every web process shares it."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import RateCounter


def _window_start(now: datetime, seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo)


def hit(key: str, limit: int, window_seconds: int = 60) -> int | None:
    """Count one request; None when allowed, else whole seconds until the window resets."""
    now = timezone.now()
    start = _window_start(now, window_seconds)
    with transaction.atomic():
        counter, _ = RateCounter.objects.get_or_create(key=key, window_start=start)
        RateCounter.objects.filter(pk=counter.pk).update(count=F("count") + 1)
        count = RateCounter.objects.values_list("count", flat=True).get(pk=counter.pk)
    if count <= limit:
        return None
    # Rounded up: a client that waits exactly Retry-After must find the new window open.
    return max(1, math.ceil((start + timedelta(seconds=window_seconds) - now).total_seconds()))
