"""The beat schedule: seeded from settings in UTC, editable, expiring; and a real beat sending to its lanes."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from celery import current_app as app
from celery.utils.imports import symbol_by_name
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from tools.harness import ROOT, purge_lanes, queue_depth, wait_for

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


@pytest.mark.integration
def test_a_real_beat_sends_each_entry_to_its_lane_with_an_expiry(live, tmp_path):
    # The one beat, as the Procfile starts it, on the database schedule: an entry
    # due every second lands on the maintenance lane carrying its expiry, and the
    # maintenance pool runs it.
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="cleanup soon", task="weather.tasks.cleanup_old_weather_data",
                                interval=every_second, expire_seconds=60)
    live.stop("maintenance")
    log_path = tmp_path / "beat.log"
    try:
        with log_path.open("wb") as log:
            beat = subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, env=live.env,
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                def sent() -> bool:
                    assert beat.poll() is None, log_path.read_text()[-2000:]
                    # Sent, and its run recorded at once (beat writes each send's last run right away).
                    return queue_depth("maintenance") >= 1 and PeriodicTask.objects.filter(
                        name="cleanup soon", total_run_count__gte=1).exists()

                wait_for(sent, timeout=60, what="beat to send the entry")
            finally:
                beat.terminate()
                try:
                    beat.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    beat.kill()
                    beat.wait(timeout=10)
        entry = PeriodicTask.objects.get(name="cleanup soon")
        assert entry.total_run_count >= 1
        assert entry.last_run_at is not None
        with app.connection_for_write() as connection:
            message = connection.default_channel.basic_get("maintenance", no_ack=False)
            headers = message.headers
            connection.default_channel.basic_reject(message.delivery_tag, requeue=True)
        assert headers["task"] == "weather.tasks.cleanup_old_weather_data"
        expires = datetime.fromisoformat(headers["expires"])
        assert timedelta(0) < expires - entry.last_run_at <= timedelta(seconds=61)
        live.start("maintenance")
        result = wait_for(lambda: TaskResult.objects.filter(task_id=headers["id"], status="SUCCESS").first(),
                          timeout=30, what="the maintenance pool to run it")
        assert result.worker.startswith("maintenance@")
    finally:
        # Further sends of the every-second entry must not run in later tests.
        live.stop("maintenance")
        purge_lanes()
        live.start("maintenance")


class _FormFields(HTMLParser):
    """The values a browser would submit from a page's form: inputs, checked boxes, selected options, textareas."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        name = found.get("name")
        if tag == "input" and name and found.get("type") not in ("submit", "button", "file"):
            if found.get("type") not in ("checkbox", "radio") or "checked" in found:
                self.fields[name] = found.get("value", "on" if found.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select = name
            self.fields.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in found:
            self.fields[self._select] = found.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data.removeprefix("\n") if not self.fields[self._textarea] else data


@pytest.mark.integration
def test_an_entry_edited_in_the_admin_is_sent_as_edited_by_the_running_beat(live, tmp_path):
    # Through the admin's own form (its save sends the signal the beat watches), not a queryset .update().
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    entry = PeriodicTask.objects.create(name="summary probe", task="weather.tasks.extract_data",
                                        args='["2026-01-01"]', interval=every_second, expire_seconds=60)
    live.stop("bulk")  # what beat sends stays on the queue to be read
    purge_lanes()
    staff = Client()
    staff.force_login(User.objects.create_superuser("beat-editor", "beat-editor@example.com", "x"))
    beat = subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, env=live.env,
                            stdout=(tmp_path / "beat.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "'2026-01-01'" in " ".join(_sent_args("bulk")), timeout=60,
                        what="the beat to send the entry as created")
        url = f"/admin/django_celery_beat/periodictask/{entry.pk}/change/"
        form = _FormFields()
        form.feed(staff.get(url).content.decode())
        saved = staff.post(url, {**form.fields, "args": '["2026-01-02"]', "_save": "Save"})
        assert saved.status_code == 302, saved.content.decode()[-3000:]
        assert PeriodicTask.objects.get(pk=entry.pk).args == '["2026-01-02"]'
        wait_for(lambda: "'2026-01-02'" in " ".join(_sent_args("bulk")), timeout=60,
                 what="the running beat to send the edited entry")
        assert beat.poll() is None
    finally:
        beat.kill()
        beat.wait(timeout=10)
        PeriodicTask.objects.filter(pk=entry.pk).delete()
        purge_lanes()
        live.start("bulk")


def _sent_args(queue: str) -> list[str]:
    """The argument reprs of every message on the queue, taken off (they are the test's own)."""
    reprs = []
    with app.connection_for_write() as connection:
        while (message := connection.default_channel.basic_get(queue, no_ack=True)) is not None:
            reprs.append(str(message.headers.get("argsrepr")))
    return reprs


def test_every_beat_that_read_the_same_row_names_the_same_slot_whenever_it_sends():
    from celery.schedules import crontab, schedule

    from weather.beat import due_slot

    last = datetime(2026, 12, 3, 9, 0, 5, tzinfo=UTC)
    every_3_hours = crontab(minute="0", hour="*/3")
    assert due_slot("refresh", every_3_hours, last) == "refresh@2026-12-03T12:00:00+00:00"
    assert due_slot("probe", schedule(timedelta(seconds=30)), last) == "probe@2026-12-03T09:00:35+00:00"
    # A beat paused for an hour that resumes with the same last run names the same slot.
    assert due_slot("refresh", every_3_hours, last) == due_slot("refresh", every_3_hours, last)
    assert due_slot("refresh", every_3_hours, last + timedelta(hours=3)) == "refresh@2026-12-03T15:00:00+00:00"
