"""The periodic work, declared once: each entry's crontab, expiry and the refresh deadline derive from it."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

# The original design: every city refreshed every 3 hours, retention cleanup daily at 01:00.
REFRESH_EVERY_HOURS = 3
CLEANUP_AT_HOUR = 1

REFRESH_INTERVAL = timedelta(hours=REFRESH_EVERY_HOURS)
CLEANUP_INTERVAL = timedelta(days=1)
# A run that could not start (or, for the refresh, finish its batches) within its
# interval is stale: the next one covers the same ground. A minute's margin keeps
# an expired message from overlapping the next run.
MARGIN = timedelta(minutes=1)
REFRESH_EXPIRES = REFRESH_INTERVAL - MARGIN
CLEANUP_EXPIRES = CLEANUP_INTERVAL - MARGIN

# The header the beat stamps on each periodic message: "<entry>@<due time>" (weather.beat.due_slot).
SLOT_HEADER = "periodic_slot"

REFRESH_TASK = "weather.tasks.update_all_weather_data"
CLEANUP_TASK = "weather.tasks.cleanup_old_weather_data"


def beat_schedule() -> dict[str, dict]:
    """CELERY_BEAT_SCHEDULE: what the database scheduler seeds.

    `expire_seconds`, not `expires`: django-celery-beat's DatabaseScheduler silently
    drops `expires` from entry options (the beat tests hold it to that).
    """
    return {
        "update_weather_data": {
            "task": REFRESH_TASK,
            "schedule": crontab(minute="0", hour=f"*/{REFRESH_EVERY_HOURS}"),
            "options": {"expire_seconds": int(REFRESH_EXPIRES.total_seconds())},
        },
        "cleanup_old_data": {
            "task": CLEANUP_TASK,
            "schedule": crontab(minute="0", hour=str(CLEANUP_AT_HOUR)),
            "options": {"expire_seconds": int(CLEANUP_EXPIRES.total_seconds())},
        },
    }
