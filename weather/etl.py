"""The daily summary ETL: extract readings, transform to statistics, load summaries."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone

from .models import DailySummary, WeatherData


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def extract(day: str | None = None) -> dict:
    """Temperatures of one UTC day (default: today) as [city_id, temperature] pairs."""
    target = date.fromisoformat(day) if day else timezone.now().date()
    start, end = _day_bounds(target)
    rows = WeatherData.objects.filter(observed_at__gte=start, observed_at__lt=end).order_by()
    return {"day": target.isoformat(), "readings": [list(row) for row in rows.values_list("city_id", "temperature")]}


def transform(payload: dict) -> dict:
    """Per-city minimum, maximum, mean and count of the extracted temperatures."""
    by_city: dict[int, list[float]] = defaultdict(list)
    for city_id, temperature in payload["readings"]:
        by_city[int(city_id)].append(float(temperature))
    summaries = [
        [city_id, min(values), max(values), round(sum(values) / len(values), 2), len(values)]
        for city_id, values in sorted(by_city.items())
    ]
    return {"day": payload["day"], "summaries": summaries}


def load(payload: dict) -> dict:
    """Upsert the summaries of the day; running it twice leaves the same rows."""
    day = date.fromisoformat(payload["day"])
    now = timezone.now()
    rows = [
        DailySummary(
            city_id=city_id,
            day=day,
            min_temperature=low,
            max_temperature=high,
            mean_temperature=mean,
            readings_count=count,
            computed_at=now,
        )
        for city_id, low, high, mean, count in payload["summaries"]
    ]
    DailySummary.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["city", "day"],
        update_fields=["min_temperature", "max_temperature", "mean_temperature", "readings_count", "computed_at"],
    )
    return {"day": payload["day"], "cities": len(rows)}
