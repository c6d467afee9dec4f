"""Periodic tasks not triggered: a beat alive, exactly one leading, every entry sound, timezones that agree."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from celery import current_app
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from routing.routes import UnroutedTaskError, lane_for
from weather.models import BeatHeartbeat, BeatLease
from weather.schedulesync import differences

from .findings import FAIL, NOT_TRIGGERED, OK, WARN, Context, Finding

# A last run may be this much later than its interval before the entry counts as missed.
SLACK = timedelta(minutes=5)


def _finding(check: str, status: str, saw: str, todo: str = "") -> Finding:
    return Finding(NOT_TRIGGERED, check, status, saw, todo)


def heartbeat_stale_after() -> timedelta:
    """A beat ticks at least every third of its lease; twice the lease without a tick means it is gone."""
    return timedelta(seconds=2 * settings.BEAT_LEASE_SECONDS)


def beat_alive(context: Context) -> Iterator[Finding]:
    """A beat is ticking, and exactly one holds the lease."""
    now = timezone.now()
    fresh = list(BeatHeartbeat.objects.filter(beat_at__gte=now - heartbeat_stale_after()))
    if not fresh:
        last = BeatHeartbeat.objects.order_by("-beat_at").first()
        seen = (f"last heartbeat {last.instance} at {last.beat_at:%Y-%m-%d %H:%M:%S} UTC" if last
                else "no heartbeat ever")
        yield _finding("beat alive", FAIL, f"no beat ticked in the last {heartbeat_stale_after().seconds} s ({seen})",
                       "start one: `python -m workers beat` (the Procfile's beat; any number may run)")
        return
    yield _finding("beat alive", OK, f"{len(fresh)} beat(s) ticking: {', '.join(sorted(b.instance for b in fresh))}")
    lease = BeatLease.objects.first()
    leaders = [b.instance for b in fresh if b.leading]
    if lease and lease.holder in leaders and len(leaders) == 1:
        yield _finding("beat leader", OK, f"{lease.holder} sends; {len(fresh) - 1} standing by")
    else:
        yield _finding("beat leader", FAIL, f"lease held by {lease.holder if lease else 'nobody'}, "
                                            f"beats saying they lead: {leaders or 'none'}",
                       "wait one lease period (BEAT_LEASE_SECONDS); if it persists, the database clock or "
                       "connection of a beat is failing: see the beat logs")


def _interval(task: PeriodicTask) -> timedelta | None:
    """How often the entry fires: its interval, or the shortest gap between its crontab's runs over a week."""
    if task.interval is not None:
        return task.interval.schedule.run_every
    if task.crontab is None:
        return None  # clocked and solar entries: no fixed interval to hold them to
    cron = task.crontab.schedule
    start = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; the weekday sets below count from Sunday
    times = [start + timedelta(days=day, hours=hour, minutes=minute)
             for day in range(8) for hour in sorted(cron.hour) for minute in sorted(cron.minute)
             if (start + timedelta(days=day)).isoweekday() % 7 in cron.day_of_week
             and (start + timedelta(days=day)).day in cron.day_of_month
             and (start + timedelta(days=day)).month in cron.month_of_year]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return min(gaps) if gaps else timedelta(days=7)


def entries(context: Context) -> Iterator[Finding]:
    """Each entry enabled, its task registered and routed, expiring within its interval, run when it was due."""
    current_app.loader.import_default_modules()
    now = timezone.now()
    for task in PeriodicTask.objects.select_related("interval", "crontab").order_by("name"):
        check = f"entry {task.name}"
        if not task.enabled:
            yield _finding(check, WARN, "disabled", "enable it in the admin (Periodic tasks) if it should run")
            continue
        if task.task not in current_app.tasks:
            yield _finding(check, FAIL, f"names {task.task!r}, which no worker registers",
                           "fix the task name in the admin, or deploy the code that defines it")
            continue
        try:
            lane = lane_for(task.task)
        except UnroutedTaskError as error:
            yield _finding(check, FAIL, str(error), "add the task to routing/routes.py")
            continue
        interval = _interval(task)
        problems = []
        if interval and task.expire_seconds is None:
            problems.append("no expiry: a backlog would run stale copies")
        elif interval and task.expire_seconds > interval.total_seconds():
            problems.append(f"expires after {task.expire_seconds} s, longer than its {interval} interval")
        # One truth with /ops/'s schedules table: "last sent" is the entry's last_run_at, nothing else.
        sent = (f"last sent {task.last_run_at:%Y-%m-%d %H:%M} UTC" if task.last_run_at
                else f"not sent yet (entry changed {task.date_changed:%Y-%m-%d %H:%M} UTC)")
        due_since = task.last_run_at or task.date_changed
        if interval and due_since and now - due_since > interval + SLACK:
            yield _finding(check, FAIL, f"{sent}, over {interval} ago",
                           "is a beat alive and leading (above)? then look at the beat log for this entry")
            continue
        if problems:
            yield _finding(check, WARN, "; ".join(problems), "set expire_seconds below the interval in the admin")
        else:
            yield _finding(check, OK, f"to lane {lane}, every {interval or task.schedule}, {sent}")


def code_and_database(context: Context) -> Iterator[Finding]:
    """The database holds the entries weather/schedules.py declares (beat seeds missing ones, never overwrites)."""
    found = differences()
    if not found:
        yield _finding("entries match the code", OK, "the database holds weather/schedules.py's entries")
        return
    yield _finding("entries match the code", WARN, "; ".join(difference.describe() for difference in found),
                   "`manage.py schedules` shows them; `manage.py schedules --apply` writes the code's "
                   "(or make the admin's change in weather/schedules.py)")


def _dst_hours(zone: str, year: int) -> tuple[set[int], set[int]]:
    """Local hours a DST change skips and repeats in `zone` during `year`."""
    tz = ZoneInfo(zone)
    skipped, repeated = set(), set()
    moment = datetime(year, 1, 1, tzinfo=UTC)
    previous = moment.astimezone(tz).utcoffset()
    while moment.year == year:
        moment += timedelta(hours=1)
        offset = moment.astimezone(tz).utcoffset()
        if offset != previous:
            local = moment.astimezone(tz)
            change = int((offset - previous).total_seconds() // 3600)
            if change > 0:
                skipped |= {(local.hour - h) % 24 for h in range(1, change + 1)}
            else:
                repeated |= {(local.hour + h) % 24 for h in range(-change)}
            previous = offset
    return skipped, repeated


def timezones(context: Context) -> Iterator[Finding]:
    """TIME_ZONE, CELERY_TIMEZONE, each running beat's and each crontab's zone agree; no crontab hour in DST."""
    zones = {"TIME_ZONE": settings.TIME_ZONE, "CELERY_TIMEZONE": settings.CELERY_TIMEZONE}
    # What the beats run with, as their heartbeats say: a beat deployed with other settings schedules in its own zone.
    beats = BeatHeartbeat.objects.filter(beat_at__gte=timezone.now() - heartbeat_stale_after()).exclude(timezone="")
    zones.update({f"beat {beat.instance}": beat.timezone for beat in beats.order_by("instance")})
    if len(set(zones.values())) > 1:
        yield _finding("timezones", FAIL, ", ".join(f"{name}={zone}" for name, zone in zones.items()),
                       "give every process the same TIME_ZONE (CELERY_TIMEZONE follows it), then restart the "
                       "beats whose zone differs")
    else:
        running = f" ({len(zones) - 2} running beat(s) too)" if len(zones) > 2 else " (no running beat to compare)"
        yield _finding("timezones", OK, f"everything in {settings.TIME_ZONE}{running}")
    year = timezone.now().year
    for task in PeriodicTask.objects.filter(enabled=True, crontab__isnull=False).select_related("crontab"):
        zone = str(task.crontab.timezone)
        skipped, repeated = _dst_hours(zone, year)
        hours = set(task.crontab.schedule.hour)
        if hours & (skipped | repeated):
            which = "skipped" if hours & skipped else "repeated"
            yield _finding(f"entry {task.name} timezone", WARN,
                           f"runs at hour(s) {sorted(hours & (skipped | repeated))} in {zone}, which a DST change "
                           f"{which}: that day it runs {'not at all' if which == 'skipped' else 'twice'}",
                           "move it out of the DST hours, or give its crontab the UTC timezone")
        elif zone != settings.CELERY_TIMEZONE:
            yield _finding(f"entry {task.name} timezone", WARN, f"its crontab is in {zone}, the app in "
                                                              f"{settings.CELERY_TIMEZONE}",
                           "fine if meant; otherwise give the crontab the app's timezone in the admin")
