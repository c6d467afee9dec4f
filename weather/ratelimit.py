"""A sliding-window request limit per client, kept in the database so every web process shares it.

No span of `window_seconds` admits more than `limit` requests, wherever it
starts: each client's row keeps the times of its requests accepted within the last
window and is locked while one is counted. (A fixed window admitted twice the
limit across its boundary: a full window's worth at its end, another at the start
of the next.) Refused requests are not recorded, so a client that keeps knocking
is let in again as soon as its oldest accepted request leaves the window.
"""

from __future__ import annotations

import math
import time

from django.db import transaction

from .models import RateWindow


def hit(key: str, limit: int, window_seconds: int = 60, now: float | None = None) -> int | None:
    """Count one request of `key`; None when allowed, else whole seconds until one is."""
    now = time.time() if now is None else now
    with transaction.atomic():
        row, _ = RateWindow.objects.select_for_update().get_or_create(key=key)
        recent = sorted(t for t in row.hits if t > now - window_seconds)
        if len(recent) >= limit:
            # Allowed once enough of the accepted ones have left the window.
            frees_at = recent[len(recent) - limit] + window_seconds
            # Rounded up: a client that waits exactly Retry-After must be let in.
            return max(1, math.ceil(frees_at - now))
        row.hits = [*recent, now]
        row.save(update_fields=["hits", "updated_at"])
    return None
