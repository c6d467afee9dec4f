"""The settings' beat schedule, as django-celery-beat's DatabaseScheduler loads it."""

import pytest
from django.conf import settings
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from server_config.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


def test_database_scheduler_loads_the_settings_schedule():
    scheduler = DatabaseScheduler(app=app, lazy=False)
    try:
        schedule = scheduler.schedule
    finally:
        scheduler.close()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        task = PeriodicTask.objects.get(name=name)
        assert task.task == entry["task"]
        assert task.crontab is not None
        assert str(task.crontab.timezone) == "UTC"
        assert task.expires is None
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
