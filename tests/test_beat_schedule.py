"""The beat schedule as the configured database scheduler loads it: seeded, UTC, editable, expiring."""

import pytest
from celery.utils.imports import symbol_by_name
from django.conf import settings
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from server_config.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def start_scheduler() -> dict:
    """What a starting beat does: build the configured scheduler and read its schedule."""
    scheduler_class = symbol_by_name(settings.CELERY_BEAT_SCHEDULER)
    scheduler = scheduler_class(app=app, lazy=False)
    try:
        return dict(scheduler.schedule)
    finally:
        scheduler.close()


def test_the_settings_schedule_is_seeded_in_utc_with_expiry():
    schedule = start_scheduler()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        task = PeriodicTask.objects.get(name=name)
        assert task.task == entry["task"]
        assert str(task.crontab.timezone) == "UTC"
        assert task.expire_seconds == entry["options"]["expire_seconds"]
        assert schedule[name].task == entry["task"]
    refresh = PeriodicTask.objects.get(name="update_weather_data").crontab
    assert (refresh.minute, refresh.hour) == ("0", "*/3")
    cleanup = PeriodicTask.objects.get(name="cleanup_old_data").crontab
    assert (cleanup.minute, cleanup.hour) == ("0", "1")


def test_every_beat_entry_expires_within_its_interval():
    intervals = {"update_weather_data": 3 * 3600, "cleanup_old_data": 24 * 3600}
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert 0 < entry["options"]["expire_seconds"] <= intervals[name]


def test_an_admin_edit_survives_a_beat_restart():
    start_scheduler()
    edited, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="*/6", timezone="UTC")
    PeriodicTask.objects.filter(name="update_weather_data").update(crontab=edited)
    schedule = start_scheduler()
    assert PeriodicTask.objects.get(name="update_weather_data").crontab == edited
    assert schedule["update_weather_data"].schedule.hour == set(range(0, 24, 6))


def test_celery_backend_cleanup_is_not_installed():
    # The maintenance cleanup trims task results in small batches instead of one big delete.
    schedule = start_scheduler()
    assert "celery.backend_cleanup" not in schedule
    assert not PeriodicTask.objects.filter(task="celery.backend_cleanup").exists()
