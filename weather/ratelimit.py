"""A fixed-window request limit per client, counted in the database so every web process shares it."""

from __future__ import annotations

import contextlib
import ipaddress
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from .models import RateCounter


def client_key(request: HttpRequest) -> str:
    """The user when signed in, else the client address (behind NUM_TRUSTED_PROXIES proxies)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    address = request.META.get("REMOTE_ADDR", "unknown")
    proxies = settings.NUM_TRUSTED_PROXIES
    if proxies:
        # Each trusted proxy appends the address it saw; the one before them is the client.
        chain = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(chain) >= proxies:
            # Only a real address counts: anything else (a NUL, a name, garbage a client
            # slipped in) would be a key the client controls. Then the proxy's own address is.
            with contextlib.suppress(ValueError):
                address = str(ipaddress.ip_address(chain[-proxies]))
    return f"ip:{address[:100]}"


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
