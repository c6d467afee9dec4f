"""Cities, their readings and the daily summaries computed from them."""

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
