"""Refreshing readings: one city for a person, or a batch of cities for the periodic refresh."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from django.conf import settings

from . import quota
from .models import City
from .quota import Consumer
from .services import InvalidReadingError, Location, Reading, TransientProviderError, WeatherService
from .storage import upsert_readings

# How long every worker stays away after a 429 that gave no Retry-After.
DEFAULT_RATE_LIMIT_PAUSE_S = 60.0


class UnknownCityError(LookupError):
    """No city has this id."""


@functools.lru_cache(maxsize=1)
def weather_service() -> WeatherService:
    """One client (and one pooled HTTP session) per process."""
    return WeatherService()


def _location(city: City) -> Location:
    return Location(latitude=city.latitude, longitude=city.longitude)


def _ask_provider(locations: list[Location], consumer: Consumer) -> list[Reading | InvalidReadingError]:
    """Reserve quota for the locations, then make the one request; a 429 pauses every worker."""
    quota.reserve(len(locations), consumer)
    try:
        return weather_service().get_current_many(locations)
    except TransientProviderError as error:
        if error.status == 429:
            quota.pause_provider(error.retry_after or DEFAULT_RATE_LIMIT_PAUSE_S)
        raise


def refresh_city(city_id: int) -> dict:
    """Fetch and store the current reading of one city; returns what was stored."""
    city = City.objects.filter(pk=city_id).only("id", "latitude", "longitude").first()
    if city is None:
        raise UnknownCityError(f"city {city_id} does not exist")
    (reading,) = _ask_provider([_location(city)], Consumer.INTERACTIVE)
    if isinstance(reading, InvalidReadingError):
        raise reading
    upsert_readings([(city.pk, reading)])
    return {
        "city_id": city.pk,
        "temperature": reading.temperature,
        "humidity": reading.humidity,
        "pressure": reading.pressure,
        "observed_at": reading.observed_at.isoformat(),
    }


@dataclass
class BatchOutcome:
    """What one batch request stored and which cities it could not."""

    refreshed: int = 0
    failed: dict[int, str] = field(default_factory=dict)


def refresh_batch(city_ids: Sequence[int]) -> BatchOutcome:
    """One provider request for all these cities and one bulk upsert of their readings."""
    cities = list(City.objects.filter(pk__in=city_ids).only("id", "latitude", "longitude").order_by("pk"))
    outcome = BatchOutcome()
    found = {city.pk for city in cities}
    for missing in set(city_ids) - found:
        outcome.failed[missing] = "city no longer exists"
    if not cities:
        return outcome
    results = _ask_provider([_location(city) for city in cities], Consumer.BULK)
    good: list[tuple[int, Reading]] = []
    for city, result in zip(cities, results, strict=True):
        if isinstance(result, InvalidReadingError):
            outcome.failed[city.pk] = str(result)
        else:
            good.append((city.pk, result))
    outcome.refreshed = upsert_readings(good)
    return outcome


def active_city_batches(batch_size: int | None = None) -> Iterator[list[int]]:
    """Ids of the active cities, in provider-sized batches, in primary-key order."""
    size = batch_size or settings.WEATHER_BATCH_SIZE
    ids = City.objects.active().order_by("pk").values_list("pk", flat=True)
    batch: list[int] = []
    for city_id in ids.iterator(chunk_size=5000):
        batch.append(city_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
