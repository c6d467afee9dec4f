"""The seeding rule: beat seeds and never overwrites; `manage.py schedules` shows and applies the code's entries."""

from __future__ import annotations

import copy

import pytest
from celery import current_app
from django.core.management import CommandError, call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from tests.weather.test_beat import start_scheduler
from weather.ops.doctor import periodic
from weather.ops.doctor.findings import OK, WARN, Context
from weather.schedulesync import DIFFERS, MISSING, apply, differences

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def code_schedule(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The beat schedule as code declares it, editable by the test as a release would change weather/schedules.py."""
    schedule = copy.deepcopy(current_app.conf.beat_schedule)
    monkeypatch.setitem(current_app.conf, "beat_schedule", schedule)
    return schedule


def _doctor() -> list:
    return list(periodic.code_and_database(Context()))


def test_a_freshly_seeded_database_holds_the_code_s_entries(code_schedule):
    assert {d.kind for d in differences()} == {MISSING}
    start_scheduler()
    assert differences() == []
    assert [finding.status for finding in _doctor()] == [OK]


def test_a_changed_expiry_in_code_is_shown_not_applied_by_beat_then_applied_on_request(code_schedule):
    start_scheduler()
    code_schedule["update_weather_data"]["options"]["expire_seconds"] = 3000
    start_scheduler()  # a beat restart on the new release seeds nothing over the existing entry
    assert PeriodicTask.objects.get(name="update_weather_data").expire_seconds == 10740

    [difference] = differences()
    assert (difference.name, difference.kind) == ("update_weather_data", DIFFERS)
    assert difference.fields == {"expire_seconds": ("10740", "3000")}
    [finding] = _doctor()
    assert finding.status == WARN
    assert "expire_seconds 10740 in the database, 3000 in code" in finding.saw
    with pytest.raises(CommandError, match="1 of 2 entries differ"):
        call_command("schedules")

    call_command("schedules", "--apply")
    assert PeriodicTask.objects.get(name="update_weather_data").expire_seconds == 3000
    assert differences() == []


def test_an_admin_edit_is_a_difference_until_applied_and_apply_keeps_enabled_and_last_run(code_schedule):
    start_scheduler()
    edited, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="*/6", timezone="UTC")
    task = PeriodicTask.objects.get(name="update_weather_data")
    task.crontab, task.enabled = edited, False
    task.save()
    PeriodicTask.objects.filter(pk=task.pk).update(total_run_count=7)

    [difference] = differences()
    assert set(difference.fields) == {"schedule"}
    assert "30 */6" in difference.fields["schedule"][0]
    assert "0 */3" in difference.fields["schedule"][1]

    applied = apply(["update_weather_data"])
    assert [d.name for d in applied] == ["update_weather_data"]
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour) == ("0", "*/3")
    assert (task.enabled, task.total_run_count) == (False, 7)
    assert differences() == []


def test_applying_an_entry_the_code_does_not_declare_is_a_clear_error(code_schedule):
    with pytest.raises(CommandError, match=r"not in weather/schedules\.py: nightly_report; known: cleanup_old_data"):
        call_command("schedules", "--apply", "nightly_report")
