"""The daily summary ETL: extract per-city aggregates, transform to summaries, load them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Max, Min, Sum
from django.utils import timezone

from . import effects
from .models import DailySummary, Effect, WeatherData
from .storage import insert_missing, upsert


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def extract(day: str | None = None) -> dict:
    """Per-city [city_id, min, max, sum, count] of one UTC day's temperatures (default: today).

    The database aggregates: one row per city travels through the broker and the
    result table, not every reading of the day (eight a city at the 3-hourly refresh).
    """
    target = date.fromisoformat(day) if day else timezone.now().date()
    start, end = _day_bounds(target)
    rows = (
        WeatherData.objects.filter(observed_at__gte=start, observed_at__lt=end)
        .values("city_id")
        .annotate(low=Min("temperature"), high=Max("temperature"), total=Sum("temperature"), count=Count("id"))
        .order_by("city_id")
        .values_list("city_id", "low", "high", "total", "count")
    )
    return {"day": target.isoformat(), "cities": [list(row) for row in rows]}


def transform(payload: dict) -> dict:
    """Summaries from the aggregates: the mean, rounded; cities without readings dropped."""
    summaries = [
        [int(city_id), float(low), float(high), round(float(total) / count, 2), int(count)]
        for city_id, low, high, total, count in payload["cities"]
        if count
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
    fields = ["min_temperature", "max_temperature", "mean_temperature", "readings_count", "computed_at"]
    with effects.shared_transaction():
        created = insert_missing(rows, unique_fields=["city", "day"], returning="city")
        upsert([row for row in rows if row.city_id not in created], unique_fields=["city", "day"],
               update_fields=fields)
        effects.record(Effect.Kind.SUMMARY, [(effects.summary_unit(row.city_id, day), row.city_id in created)
                                             for row in rows])
    return {"day": payload["day"], "cities": len(rows)}
