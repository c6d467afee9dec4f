"""Small builders for test data."""

from __future__ import annotations

import itertools

from weather.models import City

_counter = itertools.count(1)


def make_city(name: str | None = None, latitude: float | None = None, longitude: float | None = None,
              **fields: object) -> City:
    """A saved city at a distinct place unless told otherwise."""
    n = next(_counter)
    return City.objects.create(
        name=name or f"City {n}",
        country_code=fields.pop("country_code", "FR"),
        latitude=latitude if latitude is not None else (n * 0.37) % 80,
        longitude=longitude if longitude is not None else (n * 1.13) % 170,
        **fields,
    )


def make_cities(count: int) -> list[City]:
    """`count` saved cities in one statement."""
    start = next(_counter)
    _ = [next(_counter) for _ in range(count)]
    cities = [
        City(name=f"Bulk {start + i}", country_code="DE", latitude=((start + i) * 0.0137) % 80,
             longitude=((start + i) * 0.0291) % 170)
        for i in range(count)
    ]
    return City.objects.bulk_create(cities)
