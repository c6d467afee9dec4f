"""The project's work as Django tasks (Django's Tasks API), run by the lanes' pools like every Celery task."""

from __future__ import annotations

from routing import BULK, INTERACTIVE

from . import etl
from .lanetasks.api import task
from .refresh import refresh_city


@task(queue_name=INTERACTIVE.name)
def fetch_city(city_id: int) -> dict:
    """Fetch and store one city's current weather (the reading's summary is the result)."""
    return refresh_city(int(city_id))


@task(queue_name=BULK.name)
def summarize_day(day: str | None = None) -> dict:
    """A UTC day's per-city summaries: extract, transform and load, in one task."""
    return etl.load(etl.transform(etl.extract(day)))
