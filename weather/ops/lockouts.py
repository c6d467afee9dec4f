"""Logins django-axes locks out right now: which address and username, how many failures, until when."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.utils import timezone

# The operator's unlock for each way django-axes counts (a parameter alone, or a combination).
UNLOCK_COMMANDS = {("ip_address",): "axes_reset_ip", ("username",): "axes_reset_username",
                   ("ip_address", "username"): "axes_reset_ip_username"}


def _counted_by() -> list[tuple[str, ...]]:
    """AXES_LOCKOUT_PARAMETERS as tuples: "ip_address" and ["ip_address", "username"] alike."""
    return [(entry,) if isinstance(entry, str) else tuple(entry) for entry in settings.AXES_LOCKOUT_PARAMETERS]


def current_lockouts() -> list[dict]:
    """Each locked address, username or pair, counted the way django-axes counts (failures summed per key)."""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    failures: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = defaultdict(int)
    last: dict[tuple[tuple[str, ...], tuple[str, ...]], datetime] = {}
    for attempt in AccessAttempt.objects.filter(attempt_time__gte=since):
        for parameters in _counted_by():
            values = tuple(getattr(attempt, parameter, None) or "" for parameter in parameters)
            if not all(values):
                continue
            key = (parameters, values)
            failures[key] += attempt.failures_since_start
            last[key] = max(last.get(key, attempt.attempt_time), attempt.attempt_time)
    return [
        {"by": " and ".join(parameter.replace("_", " ") for parameter in parameters), "value": " ".join(values),
         "failures": count, "until": last[(parameters, values)] + settings.AXES_COOLOFF_TIME,
         "unlock": f"python manage.py {UNLOCK_COMMANDS[parameters]} {' '.join(values)}"}
        for (parameters, values), count in sorted(failures.items()) if count >= settings.AXES_FAILURE_LIMIT
    ]
