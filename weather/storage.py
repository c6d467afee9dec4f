"""Idempotent writes of readings: the same observation stored twice is one row."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from .models import WeatherData
from .services import Reading

UPSERT_CHUNK = 1000


def upsert_readings(readings: Iterable[tuple[int, Reading]]) -> int:
    """Insert or update one row per (city, observation) in one statement per chunk."""
    now = timezone.now()
    rows = [
        WeatherData(
            city_id=city_id,
            temperature=reading.temperature,
            humidity=reading.humidity,
            pressure=reading.pressure,
            observed_at=reading.observed_at,
            fetched_at=now,
        )
        for city_id, reading in readings
    ]
    if rows:
        WeatherData.objects.bulk_create(
            rows,
            batch_size=UPSERT_CHUNK,
            update_conflicts=True,
            unique_fields=["city", "observed_at"],
            update_fields=["temperature", "humidity", "pressure", "fetched_at"],
        )
    return len(rows)
