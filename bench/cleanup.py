"""Retention cleanup of --rows expired readings: total time, rows per second, longest statement.

    .venv/bin/python -m bench.cleanup [--rows 1000000 --batch 5000]
"""

from __future__ import annotations

import argparse
import sys
import time

from tools.measure import machine, prepare, print_table, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=int, default=100_000, help="fresh rows that must survive")
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()

    prepare("bench")
    from django.core.management import call_command
    from django.db import connection

    from weather import retention
    from weather.models import City, WeatherData

    if City.objects.count() < 1000:
        call_command("load_cities", limit=1000, verbosity=0)
    city_ids = list(City.objects.order_by("pk").values_list("pk", flat=True)[:1000])
    per_city_old = args.rows // len(city_ids)
    per_city_new = args.keep // len(city_ids)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE weather_weatherdata")
        started = time.monotonic()
        # Expired: one reading every 15 minutes going back from 40 days ago; fresh: the last days.
        cursor.execute("""
            INSERT INTO weather_weatherdata (city_id, temperature, humidity, pressure, observed_at, fetched_at)
            SELECT c, 10, 50, 1000, now() - interval '40 days' - (n * interval '15 minutes'), now()
            FROM unnest(%s::bigint[]) AS c, generate_series(1, %s) AS n
            UNION ALL
            SELECT c, 10, 50, 1000, now() - (n * interval '15 minutes'), now()
            FROM unnest(%s::bigint[]) AS c, generate_series(1, %s) AS n
        """, [city_ids, per_city_old, city_ids, per_city_new])
        cursor.execute("ANALYZE weather_weatherdata")
        fill_s = time.monotonic() - started
    expired = per_city_old * len(city_ids)
    fresh = per_city_new * len(city_ids)

    statements: list[tuple[str, float]] = []

    def timed(execute, sql, params, many, context):
        begin = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((sql.split()[0], time.perf_counter() - begin))

    started = time.monotonic()
    with connection.execute_wrapper(timed):
        progress = retention.cleanup(batch_size=args.batch)
    total_s = time.monotonic() - started
    deletes = [s for kind, s in statements if kind == "DELETE"]
    selects = [s for kind, s in statements if kind == "SELECT"]
    remaining = WeatherData.objects.count()

    rows = [[expired, progress["readings_deleted"], remaining, total_s, progress["readings_deleted"] / total_s,
             len(deletes), max(deletes), max(selects)]]
    headers = ["expired", "deleted", "remaining", "total_s", "rows_per_s", "deletes", "max_delete_s", "max_select_s"]
    print(f"filled {expired + fresh} rows in {fill_s:.1f} s")
    print_table(headers, rows)
    print(f"\nlongest statement {max(deletes + selects):.3f} s (target < 1 s); fresh rows kept: "
          f"{remaining == fresh}")
    path = write_json("cleanup", {"machine": machine(), "settings": vars(args),
                                  "result": dict(zip(headers, rows[0], strict=True))})
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
