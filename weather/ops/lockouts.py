"""Logins django-axes locks out right now: which address or username, how many failures, until when."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.utils import timezone


def current_lockouts() -> list[dict]:
    """Each locked address and username, counted the way django-axes counts (failures summed per parameter)."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    failures: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], datetime] = {}
    for attempt in AccessAttempt.objects.filter(attempt_time__gte=since):
        for parameter in settings.AXES_LOCKOUT_PARAMETERS:
            value = getattr(attempt, parameter, None)
            if not value:
                continue
            key = (parameter, value)
            failures[key] += attempt.failures_since_start
            last[key] = max(last.get(key, attempt.attempt_time), attempt.attempt_time)
    unlock = {"ip_address": "axes_reset_ip", "username": "axes_reset_username"}
    return [
        {"by": parameter.replace("_", " "), "value": value, "failures": count,
         "until": last[(parameter, value)] + settings.AXES_COOLOFF_TIME,
         "unlock": f"python manage.py {unlock[parameter]} {value}"}
        for (parameter, value), count in sorted(failures.items()) if count >= settings.AXES_FAILURE_LIMIT
    ]
