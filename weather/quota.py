"""The provider quota, shared by every worker on every host through the database.

Open-Meteo counts each location as a call and limits a client per minute, hour
and day. Celery's `rate_limit` is per worker process, so it cannot enforce that:
instead every provider request first reserves its locations here. Reservations
are serialised by a row lock on the one ProviderQuota row (PostgreSQL
`SELECT ... FOR UPDATE`; SQLite serialises writers anyway), then checked against
sliding windows over the grants of the last minute, hour and day. Sliding windows
never exceed the limit whichever way the provider aligns its own windows. Times
come from the database's clock, so hosts whose clocks disagree still share one
timeline (and the lock relies on READ COMMITTED, Django's default isolation). On
PostgreSQL the whole reservation is one call of a database function (migration
0013): the same lock, clock, sums and grant, in one round trip instead of six.

A share of each window is kept for the interactive lane: bulk may fill the
window only up to `limit * (1 - reserve)`, so a refresh of thousands of cities
never starves a person's click.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

import routing

from . import dbfunctions
from .models import ProviderQuota, QuotaGrant

PERIODS: tuple[tuple[str, timedelta], ...] = (
    ("minute", timedelta(minutes=1)),
    ("hour", timedelta(hours=1)),
    ("day", timedelta(days=1)),
)


class Consumer(enum.StrEnum):
    """Who asks for quota (the lanes that call the provider); only the interactive one may use the reserve."""

    INTERACTIVE = routing.INTERACTIVE.name
    BULK = routing.BULK.name


class QuotaExceededError(Exception):
    """No quota now; `retry_at` says when enough of it comes back.

    Its args are its message alone, so the JSON result backend rebuilds it as
    itself (not as a wrapper) when a client reads a failed task.
    """

    def __init__(self, message: str, retry_at: datetime | None = None, now: datetime | None = None) -> None:
        if retry_at is not None:
            message = f"{message}; quota returns at {retry_at:%H:%M:%S} UTC"
        super().__init__(message)
        self.retry_at = retry_at or now or datetime.now(UTC)
        # The database's time of the refusal: the wait is measured on the clock
        # `retry_at` came from, whatever this host's clock says.
        self.refused_at = now or self.retry_at

    def wait_seconds(self) -> float:
        """Seconds until quota returns, as of the refusal."""
        return max(0.0, (self.retry_at - self.refused_at).total_seconds())


@dataclass(frozen=True)
class QuotaLimits:
    """Locations allowed per period (0 = unlimited) and the interactive reserve share."""

    per_minute: int
    per_hour: int
    per_day: int
    interactive_reserve: float

    @classmethod
    def from_settings(cls) -> QuotaLimits:
        """The limits configured in settings (WEATHER_QUOTA_*)."""
        return cls(settings.WEATHER_QUOTA_PER_MINUTE, settings.WEATHER_QUOTA_PER_HOUR,
                   settings.WEATHER_QUOTA_PER_DAY, settings.WEATHER_QUOTA_INTERACTIVE_RESERVE)

    def limit(self, period: str) -> int:
        """The configured limit of one period."""
        return {"minute": self.per_minute, "hour": self.per_hour, "day": self.per_day}[period]

    def cap(self, period: str, consumer: Consumer) -> int | None:
        """What this consumer may fill the period up to; None when unlimited."""
        limit = self.limit(period)
        if limit <= 0:
            return None
        if consumer is Consumer.INTERACTIVE:
            return limit
        return math.floor(limit * (1 - self.interactive_reserve))


def _clock() -> datetime:
    """Now, by the database's clock: one timeline for every worker host."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # clock_timestamp(), not now(): now() is the transaction's start, before the lock wait.
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()  # SQLite: one machine, one clock


def _lock() -> ProviderQuota:
    try:
        return ProviderQuota.objects.select_for_update().get(pk=1)
    except ProviderQuota.DoesNotExist:
        ProviderQuota.objects.get_or_create(pk=1)
        return ProviderQuota.objects.select_for_update().get(pk=1)


def _window_usage(now: datetime) -> dict[str, int]:
    aggregates = {
        name: Sum("locations", filter=Q(granted_at__gt=now - span), default=0) for name, span in PERIODS
    }
    return QuotaGrant.objects.filter(granted_at__gt=now - PERIODS[-1][1]).aggregate(**aggregates)


def _when_room(period: str, span: timedelta, now: datetime, excess: int) -> datetime:
    """When enough of the period's oldest grants expire to free `excess` locations."""
    freed = 0
    grants = QuotaGrant.objects.filter(granted_at__gt=now - span).order_by("granted_at")
    for granted_at, locations in grants.values_list("granted_at", "locations").iterator():
        freed += locations
        if freed >= excess:
            return granted_at + span
    return now + span


def reserve(locations: int, consumer: Consumer, limits: QuotaLimits | None = None) -> None:
    """Take `locations` from every window, or raise QuotaExceededError taking nothing."""
    limits = limits or QuotaLimits.from_settings()
    for name, _ in PERIODS:
        cap = limits.cap(name, consumer)
        if cap is not None and locations > cap:
            raise ValueError(f"{locations} locations can never fit the {consumer} cap of {cap} per {name}")
    if dbfunctions.available():
        _reserve_in_the_database(locations, consumer, limits)
        return
    with transaction.atomic():
        quota = _lock()
        now = _clock()
        if quota.paused_until and quota.paused_until > now:
            _refuse(locations, consumer, limits, now, quota.paused_until, {})
        _refuse(locations, consumer, limits, now, None, _window_usage(now))
        QuotaGrant.objects.create(granted_at=now, locations=locations, consumer=consumer)


def _reserve_in_the_database(locations: int, consumer: Consumer, limits: QuotaLimits) -> None:
    """The same reservation in one round trip: weather_reserve_quota (migration 0013) locks, reads, decides, grants.

    A refusal costs one more read, after the lock is released: when room comes back.
    """
    caps = [-1 if (cap := limits.cap(name, consumer)) is None else cap for name, _ in PERIODS]
    span_seconds = [span.total_seconds() for _, span in PERIODS]
    row = None
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM weather_reserve_quota(%s, %s, %s::double precision[], %s::integer[])",
                           [locations, str(consumer), span_seconds, caps])
            row = cursor.fetchone()
        if row is not None:
            break
        ProviderQuota.objects.get_or_create(pk=1)  # the lock row, on a database nobody reserved from yet
    if row is None:
        raise RuntimeError("weather_reserve_quota found no ProviderQuota row to lock, even after creating it")
    granted, now, paused_until, used = row
    if not granted:
        # A pause refuses before any window is summed: `used` is empty then.
        windows = {} if paused_until else dict(zip([name for name, _ in PERIODS], used, strict=True))
        _refuse(locations, consumer, limits, now, paused_until, windows)
        # The function refused, yet no window is full by this side's reckoning: never a silent grant.
        raise QuotaExceededError(f"{consumer} quota refused by the database ({used} locations used)", now, now)


def _refuse(locations: int, consumer: Consumer, limits: QuotaLimits, now: datetime,
            paused_until: datetime | None, used: dict[str, int]) -> None:
    """Raise QuotaExceededError for a pause or the first window `locations` do not fit; return if they fit."""
    if paused_until is not None:
        raise QuotaExceededError(f"provider asked to pause until {paused_until:%H:%M:%S}", paused_until, now)
    for name, span in PERIODS:
        cap = limits.cap(name, consumer)
        if cap is not None and used[name] + locations > cap:
            retry_at = _when_room(name, span, now, used[name] + locations - cap)
            raise QuotaExceededError(
                f"{consumer} quota per {name} is used up ({used[name]}/{cap} locations)", retry_at, now)


def pause_provider(seconds: float) -> None:
    """Honour a provider 429 for every worker: no reservation succeeds for `seconds`."""
    with transaction.atomic():
        quota = _lock()
        until = _clock() + timedelta(seconds=seconds)
        if quota.paused_until is None or quota.paused_until < until:
            quota.paused_until = until
            quota.save(update_fields=["paused_until"])


def usage(now: datetime | None = None) -> dict[str, int]:
    """Locations granted in each sliding window, for the operator's view."""
    return _window_usage(now or _clock())
