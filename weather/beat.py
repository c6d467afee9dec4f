"""The beat scheduler: schedules from the database, seeded from settings, and exactly one beat sending.

Any number of beat processes may run (a scaled `beat` service, a second PaaS
dyno, a replica that outlived a deploy): each tick, a beat renews or takes the
lease row; only the holder sends. A standby takes over once the leader has
missed renewing for BEAT_LEASE_SECONDS, so the next due entry goes out within
that plus one tick. Every beat writes a heartbeat at each tick, which `doctor`
reads to say who is alive and who leads; the leader also samples each lane's depth
and consumers once a minute for /ops/ (weather/lanesamples.py).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab
from celery.schedules import schedule as interval
from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from routing.broker import BrokerUnavailableError

from .adapters.celery_beat import reread_entries
from .lanesamples import sample_lanes
from .models import BeatHeartbeat, BeatLease
from .schedules import SLOT_HEADER

log = logging.getLogger(__name__)

LEASE_NAME = "beat"
# Heartbeats of beats gone this long are forgotten.
FORGET_AFTER = timedelta(days=1)


def instance_name() -> str:
    """This beat process, as its lease and heartbeat name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _ago(seconds: float) -> ExpressionWrapper:
    """The database's now minus `seconds`, so every host measures on one clock."""
    return ExpressionWrapper(Now() - Value(timedelta(seconds=seconds), output_field=DurationField()),
                             output_field=DateTimeField())


def hold_lease(instance: str, lease_seconds: float) -> bool:
    """Renew the lease if this beat holds it, or take it if its holder stopped renewing; True when held."""
    BeatLease.objects.get_or_create(name=LEASE_NAME)
    held = BeatLease.objects.filter(name=LEASE_NAME).filter(
        Q(holder=instance) | Q(renewed_at__isnull=True) | Q(renewed_at__lt=_ago(lease_seconds)),
    ).update(holder=instance, renewed_at=Now())
    return bool(held)


def beat_heartbeat(instance: str, leading: bool, timezone: str) -> None:
    """Record this tick and the timezone this beat schedules in; doctor reads the freshest heartbeats."""
    BeatHeartbeat.objects.update_or_create(instance=instance,
                                           defaults={"beat_at": Now(), "leading": leading, "timezone": timezone})


def due_slot(name: str, schedule: Any, last_run_at: datetime) -> str:
    """"<entry>@<the moment it is due>", from its last run alone: every beat that read the same row names the same slot.

    A leader paused mid-send and resumed after a standby took over sends the slot the
    standby already sent; the refresh it starts then finds that slot's run (weather.refresh).
    """
    if isinstance(schedule, crontab):
        start, delta, _ = schedule.remaining_delta(last_run_at)
        due = start + delta
    elif isinstance(schedule, interval):
        due = schedule.maybe_make_aware(last_run_at) + schedule.run_every
    else:  # solar and one-off schedules: the estimate, to the second
        due = (schedule.now() + schedule.remaining_estimate(last_run_at) + timedelta(milliseconds=500)).replace(
            microsecond=0)
    return f"{name}@{due.isoformat()}"


class SeedingDatabaseScheduler(DatabaseScheduler):
    """django-celery-beat's scheduler with a lease (one sender) and settings that seed, never overwrite."""

    _leading = False

    def tick(self, *args: object, **kwargs: object) -> float:
        """Send what is due if this beat holds the lease; otherwise stand by and try again soon."""
        lease_seconds = settings.BEAT_LEASE_SECONDS
        instance = instance_name()
        try:
            leading = hold_lease(instance, lease_seconds)
            beat_heartbeat(instance, leading, str(self.app.timezone))
        except (DatabaseError, InterfaceError) as error:
            # Without the database no beat can know it leads: none sends until it is back.
            log.warning("beat %s cannot reach the lease (%s): not sending", instance, error)
            leading = False
        if leading and not self._leading:
            log.info("beat %s leads: it sends the periodic tasks", instance)
            BeatHeartbeat.objects.filter(beat_at__lt=_ago(FORGET_AFTER.total_seconds())).delete()
            # Read entries afresh and rebuild the heap from them: the previous leader
            # has moved their last-run times on since this beat last looked.
            reread_entries(self)
        elif self._leading and not leading:
            log.warning("beat %s lost the lease: standing by", instance)
        self._leading = leading
        if leading:
            # The one leader samples the lanes for /ops/'s charts; a broker or database away skips a minute.
            try:
                sample_lanes()
            except (BrokerUnavailableError, DatabaseError, InterfaceError) as error:
                log.warning("beat %s could not sample the lanes (%s)", instance, error)
        # Renew well before the lease runs out, whatever the next entry's due time.
        renew_within = lease_seconds / 3
        if not leading:
            return renew_within
        return min(super().tick(*args, **kwargs), renew_within)

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Send the entry's task stamped with the slot it runs for (computed before the entry moves on)."""
        slot = due_slot(entry.name, entry.schedule, entry.last_run_at or entry.default_now())
        entry.options = {**entry.options, "headers": {**(entry.options.get("headers") or {}), SLOT_HEADER: slot}}
        return super().apply_async(entry, producer, advance, **kwargs)

    def setup_schedule(self) -> None:
        """Seed the settings' entries that are missing; leave existing ones as edited.

        django-celery-beat's own scheduler re-applies CELERY_BEAT_SCHEDULE with
        update_or_create on every start, silently reverting what an operator
        changed in the admin.
        """
        wanted = self.app.conf.beat_schedule or {}
        existing = set(PeriodicTask.objects.filter(name__in=list(wanted)).values_list("name", flat=True))
        self.update_from_dict({name: entry for name, entry in wanted.items() if name not in existing})

    def install_default_entries(self, data: dict) -> None:
        """Skip Celery's `celery.backend_cleanup`: the maintenance cleanup trims results in small batches."""
