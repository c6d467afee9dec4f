"""A sliding-window request limit per client, kept in the database so every web process shares it.

No span of `window_seconds` admits more than `limit` requests, wherever it
starts: each client's row keeps the times of its requests accepted within the last
window and is locked while one is counted. (A fixed window admitted twice the
limit across its boundary: a full window's worth at its end, another at the start
of the next.) Refused requests are not recorded, so a client that keeps knocking
is let in again as soon as its oldest accepted request leaves the window. On
PostgreSQL the count is one call of a database function (migration 0013), the same
steps under the same lock in one round trip instead of four.
"""

from __future__ import annotations

import math
import time

from django.db import connection, transaction

from . import dbfunctions
from .models import RateWindow


def hit(key: str, limit: int, window_seconds: int = 60, now: float | None = None) -> int | None:
    """Count one request of `key`; None when allowed, else whole seconds until one is."""
    now = time.time() if now is None else now
    if limit < 1:
        return max(1, math.ceil(window_seconds))  # a key allowed no request a window (an API key set to 0)
    if dbfunctions.available():
        with connection.cursor() as cursor:
            cursor.execute("SELECT weather_rate_hit(%s, %s, %s, %s)", [key, limit, float(window_seconds), now])
            frees_at = cursor.fetchone()[0]
    else:
        frees_at = _hit_in_python(key, limit, window_seconds, now)
    # Rounded up: a client that waits exactly Retry-After must be let in.
    return None if frees_at is None else max(1, math.ceil(frees_at - now))


def _hit_in_python(key: str, limit: int, window_seconds: int, now: float) -> float | None:
    """weather_rate_hit's steps through the ORM: None when accepted, else when the oldest counted one leaves."""
    with transaction.atomic():
        row, _ = RateWindow.objects.select_for_update().get_or_create(key=key)
        recent = sorted(t for t in row.hits if t > now - window_seconds)
        if len(recent) >= limit:
            # Allowed once enough of the accepted ones have left the window.
            return recent[len(recent) - limit] + window_seconds
        row.hits = [*recent, now]
        row.save(update_fields=["hits", "updated_at"])
    return None
