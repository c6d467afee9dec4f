"""Cities, their readings and daily summaries."""

from __future__ import annotations

import math

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


def validate_finite(value: float) -> None:
    """NaN and infinities slip past range validators (every comparison with NaN is false)."""
    if not math.isfinite(value):
        raise ValidationError(f"{value} is not a finite number")


class CityQuerySet(models.QuerySet):
    """Named filters for cities."""

    def active(self) -> CityQuerySet:
        """Cities the periodic refresh keeps up to date."""
        return self.filter(is_active=True)


class City(models.Model):
    """A place whose weather the service tracks."""

    name = models.CharField(max_length=200)
    country_code = models.CharField(max_length=2)
    latitude = models.FloatField(validators=[validate_finite, MinValueValidator(-90), MaxValueValidator(90)])
    longitude = models.FloatField(validators=[validate_finite, MinValueValidator(-180), MaxValueValidator(180)])
    timezone = models.CharField(max_length=64, default="UTC")
    population = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    # GeoNames id when the city came from the shipped dataset: makes loading idempotent.
    geonameid = models.PositiveIntegerField(null=True, blank=True, unique=True)

    objects = CityQuerySet.as_manager()

    class Meta:
        ordering = ["name", "country_code"]
        verbose_name_plural = "cities"
        constraints = [
            models.UniqueConstraint(
                fields=["name", "country_code", "latitude", "longitude"], name="city_unique_place"
            ),
            # Validators only run on full_clean(); the database refuses the rest.
            models.CheckConstraint(condition=Q(latitude__gte=-90, latitude__lte=90), name="city_latitude_range"),
            models.CheckConstraint(
                condition=Q(longitude__gte=-180, longitude__lte=180), name="city_longitude_range"
            ),
        ]
        indexes = [
            models.Index(fields=["is_active", "id"], name="city_active_idx"),
            # The orders the API list and the dashboard page through, so a deep page
            # walks an index instead of sorting every city.
            models.Index(fields=["name", "id"], name="city_name_idx"),
            models.Index(fields=["-population", "name", "id"], name="city_population_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.country_code})"


class WeatherData(models.Model):
    """One observation of current conditions for a city, as the provider reported it."""

    city = models.ForeignKey(City, on_delete=models.CASCADE, related_name="readings")
    temperature = models.FloatField(help_text="°C at 2 m")
    humidity = models.FloatField(help_text="relative humidity, % at 2 m")
    pressure = models.FloatField(help_text="surface pressure, hPa")
    observed_at = models.DateTimeField(help_text="observation time reported by the provider")
    fetched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-observed_at"]
        verbose_name_plural = "weather data"
        constraints = [
            # The same observation fetched twice is one row (idempotent upsert key);
            # its index also serves "latest reading of a city".
            models.UniqueConstraint(fields=["city", "observed_at"], name="weatherdata_unique_observation"),
        ]
        # Retention cleanup walks expired rows in primary-key order by observed_at.
        indexes = [models.Index(fields=["observed_at", "id"], name="weatherdata_retention_idx")]

    def __str__(self) -> str:
        return f"{self.city_id} @ {self.observed_at:%Y-%m-%d %H:%M}: {self.temperature} °C"


class DailySummary(models.Model):
    """Per-city temperature statistics of one UTC day, written by the ETL chain."""

    city = models.ForeignKey(City, on_delete=models.CASCADE, related_name="daily_summaries")
    day = models.DateField()
    min_temperature = models.FloatField()
    max_temperature = models.FloatField()
    mean_temperature = models.FloatField()
    readings_count = models.PositiveIntegerField()
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "city_id"]
        verbose_name_plural = "daily summaries"
        constraints = [models.UniqueConstraint(fields=["city", "day"], name="dailysummary_unique_day")]

    def __str__(self) -> str:
        return f"{self.city_id} {self.day}: {self.min_temperature}..{self.max_temperature} °C"


class RefreshRun(models.Model):
    """One refresh of every active city, fanned out as batches on the bulk lane."""

    started_at = models.DateTimeField(default=timezone.now)
    # The dispatching task's id: a redelivered dispatch finds its run instead of starting another.
    task_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    batch_size = models.PositiveIntegerField()
    batches_total = models.PositiveIntegerField(default=0)
    cities_total = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"refresh {self.pk} of {self.cities_total} cities at {self.started_at:%Y-%m-%d %H:%M}"

    def summary(self) -> dict:
        """Batches done and cities refreshed or failed so far, from the batch rows."""
        totals = self.batches.aggregate(
            done=models.Count("id", filter=~Q(status=RefreshBatch.Status.PENDING)),
            refreshed=models.Sum("refreshed", default=0),
            failed=models.Sum("failed", default=0),
        )
        return {
            "run_id": self.pk,
            "batches": self.batches_total,
            "batches_done": totals["done"],
            "cities": self.cities_total,
            "cities_refreshed": totals["refreshed"],
            "cities_failed": totals["failed"],
            "finished": totals["done"] == self.batches_total,
        }


class RefreshBatch(models.Model):
    """The outcome of one batch; written with update() so a redelivered batch never counts twice."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(RefreshRun, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    cities = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    refreshed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker that finished it (`<pool>@<host>`): which host ran what, after a failover too.
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="refreshbatch_unique_index")]

    def __str__(self) -> str:
        return f"run {self.run_id} batch {self.index}: {self.status}"


class ProviderQuota(models.Model):
    """The single row every quota reservation locks; it also holds a pause the provider asked for."""

    paused_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"provider quota (paused until {self.paused_until})" if self.paused_until else "provider quota"


class QuotaGrant(models.Model):
    """Locations granted to one provider request; the sliding windows sum these."""

    granted_at = models.DateTimeField(db_index=True)
    locations = models.PositiveIntegerField()
    consumer = models.CharField(max_length=16)

    class Meta:
        ordering = ["granted_at"]

    def __str__(self) -> str:
        return f"{self.locations} locations for {self.consumer} at {self.granted_at:%H:%M:%S}"


class PendingFetch(models.Model):
    """The one queued-or-running fetch of a city; further requests get its task id."""

    city = models.OneToOneField(City, on_delete=models.CASCADE, related_name="pending_fetch")
    task_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    # The field a replaced (stale) claim restamps.
    CLAIMED_AT = "created_at"

    def __str__(self) -> str:
        return f"fetch of {self.city_id} as {self.task_id}"


class RateWindow(models.Model):
    """The times (epoch seconds) of one client's requests accepted within the last window (weather/ratelimit.py)."""

    key = models.CharField(max_length=128, unique=True)
    hits = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.key}: {len(self.hits)} recent"


class TaskAttempt(models.Model):
    """Starts of one task message that have not finished: each one past the first is a crash."""

    task_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=200)
    lane = models.CharField(max_length=32, blank=True)
    # Which try of the message (its retry number): each try counts its own starts.
    retries = models.PositiveIntegerField(default=0)
    starts = models.PositiveIntegerField(default=0)
    last_started_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] started {self.starts} times"


class ApiKey(models.Model):
    """A client's key to the API's protected operations; only its hash is stored, shown once when created."""

    name = models.CharField(max_length=100, help_text="who or what uses this key")
    # The first characters of the key, stored plain, so a request finds its row by an index.
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    rate_limit_per_minute = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.name} ({self.prefix}..., {state})"


class DailySummaryRun(models.Model):
    """The one running ETL chain of a day; a second start while it runs gets its task id."""

    day = models.DateField(unique=True)
    # The id of the chain's last step: its result says whether the chain has ended.
    task_id = models.CharField(max_length=64, unique=True)
    started_at = models.DateTimeField(default=timezone.now)

    # The field a replaced (stale) claim restamps.
    CLAIMED_AT = "started_at"

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"daily summary of {self.day} as {self.task_id}"


class BeatLease(models.Model):
    """The right to send periodic tasks: held by one beat at a time, renewed at each of its ticks."""

    name = models.CharField(max_length=32, unique=True)
    holder = models.CharField(max_length=200, blank=True)
    # Stamped by the database's clock, so beats on hosts whose clocks disagree share one timeline.
    renewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} lease held by {self.holder or 'nobody'}"


class BeatHeartbeat(models.Model):
    """The last tick of each beat process, leader or standby: who is alive, and who leads."""

    instance = models.CharField(max_length=200, unique=True)
    beat_at = models.DateTimeField()
    leading = models.BooleanField(default=False)
    # The timezone this beat schedules in (its CELERY_TIMEZONE): doctor compares every
    # running beat's, not only its own settings.
    timezone = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self) -> str:
        return f"{self.instance} ({'leader' if self.leading else 'standby'}) at {self.beat_at:%H:%M:%S}"


class LaneSample(models.Model):
    """A lane's depth and consumers as the leading beat read them from the broker, once a minute (/ops/ charts)."""

    lane = models.CharField(max_length=64)
    sampled_at = models.DateTimeField()
    depth = models.PositiveIntegerField()
    # Unknown on the filesystem transport: no sample, not a 0.
    consumers = models.PositiveIntegerField(null=True, blank=True)
    # The lane's queue-wait histogram so far, cumulative {upper bound: count}, where the beat sees the
    # pools' metric files (null where it does not): two samples' difference is that minute's waits.
    wait_buckets = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["lane", "sampled_at"], name="lane_sample_lane_time")]
        ordering = ["lane", "sampled_at"]

    def __str__(self) -> str:
        return f"{self.lane} at {self.sampled_at:%H:%M}: {self.depth} ready, {self.consumers} consumers"
