"""Scale-out: the refresh of every city with the bulk pool on 1, 2 and 3 test hosts, and clicks while a host is cut off.

The provider is the simulator at a fixed per-request latency (I/O-bound), the
quota lifted. Each bulk replica runs on its own test host (a network namespace,
tools/testhosts.py) with the registry's bulk settings; the interactive pool runs
on the machine. The last run refreshes with two bulk hosts, cuts one off a
quarter of the way in, and measures clicks (interactive fetches, one every
--click-interval-ms) from enqueue to finish meanwhile. Needs root (namespaces).

    .venv/bin/python -m bench.scale_out [--latency-ms 1000 --clicks 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from tools.measure import ROOT, machine, percentile, prepare, print_table, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=1000.0, help="provider latency per request")
    parser.add_argument("--hosts", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--clicks", type=int, default=100)
    parser.add_argument("--click-interval-ms", type=float, default=200.0)
    args = parser.parse_args()

    os.environ.update({"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0"})
    prepare("scaleout")
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django_celery_results.models import TaskResult

    from routing import Priority
    from tools.harness import Simulator, WorkerPools, purge_lanes, wait_for
    from tools.simulator import FaultConfig, start_in_thread
    from tools.testhosts import netns_hosts
    from weather.models import City, RefreshBatch, RefreshRun
    from weather.tasks import fetch_weather_for_city, update_all_weather_data
    from workers.pools import load_pools

    call_command("load_cities", verbosity=0)
    City.objects.update(is_active=True)
    cities = City.objects.count()
    fixed_time = 1_790_000_000
    server = start_in_thread(config=FaultConfig(latency_ms=args.latency_ms, fixed_time=fixed_time))
    sim = Simulator(server.url)
    env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1"}
    logs = ROOT / "bench" / "results" / "logs"
    local = WorkerPools(env, logs)
    bulk = load_pools()["bulk"]

    def reset() -> None:
        purge_lanes()
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE weather_weatherdata, django_celery_results_taskresult, "
                           "weather_refreshbatch, weather_refreshrun, weather_quotagrant, weather_pendingfetch")
        sim.reset()
        sim.configure(latency_ms=args.latency_ms, fixed_time=fixed_time)

    def refresh(on_start=None) -> tuple[float, dict, RefreshRun]:
        started = time.monotonic()
        run = RefreshRun.objects.get(pk=update_all_weather_data.delay().get(timeout=120)["run_id"])
        if on_start:
            on_start(run)
        final = wait_for(lambda: (s := run.summary())["finished"] and s, timeout=1800, interval=0.2,
                         what="the refresh")
        return time.monotonic() - started, final, run

    results, clicks_result = [], {}
    try:
        local.start("interactive")
        for count in args.hosts:
            with netns_hosts(count, env, logs / f"hosts-{count}") as hosts:
                for host in range(1, count + 1):
                    hosts.start(host, "bulk")
                reset()
                wall, final, run = refresh()
                per_host = sorted(RefreshBatch.objects.filter(run=run).values_list("worker", flat=True))
                results.append({
                    "bulk_hosts": count, "cities": cities, "refreshed": final["cities_refreshed"],
                    "failed": final["cities_failed"], "wall_s": wall, "requests": sim.stats()["requests"],
                    "cities_per_s": final["cities_refreshed"] / wall,
                    "batches_per_host": "/".join(str(per_host.count(w)) for w in sorted(set(per_host))),
                })

        # Two bulk hosts; one is cut off a quarter of the way in while clicks keep coming.
        with netns_hosts(2, env, logs / "hosts-cut") as hosts:
            for host in (1, 2):
                hosts.start(host, "bulk")
            reset()
            city_ids = list(City.objects.order_by("pk").values_list("pk", flat=True)[: args.clicks])
            sent: dict[str, float] = {}
            cut_at: list[float] = []

            def cut_when_a_quarter_is_done(run: RefreshRun) -> None:
                started_at = time.monotonic()

                def watch() -> None:
                    wait_for(lambda: run.summary()["batches_done"] >= run.batches_total / 4, timeout=600,
                             interval=0.2, what="a quarter of the batches")
                    hosts.cut(1)
                    cut_at.append(time.monotonic() - started_at)
                    for city_id in city_ids:
                        task_id = fetch_weather_for_city.apply_async(args=[city_id],
                                                                     priority=int(Priority.CLICK)).id
                        sent[task_id] = time.time()
                        time.sleep(args.click_interval_ms / 1000)

                threading.Thread(target=watch, daemon=True).start()

            wall, final, run = refresh(cut_when_a_quarter_is_done)
            wait_for(lambda: TaskResult.objects.filter(task_id__in=list(sent), status="SUCCESS").count() == len(sent)
                     and len(sent) == len(city_ids), timeout=300, what="every click to finish")
            done = dict(TaskResult.objects.filter(task_id__in=list(sent)).values_list("task_id", "date_done"))
            latencies = [(done[task_id].timestamp() - at) * 1000 for task_id, at in sent.items()]
            clicks_result = {
                "refresh_wall_s": wall, "refreshed": final["cities_refreshed"], "failed": final["cities_failed"],
                "clicks": len(latencies), "click_p50_ms": percentile(latencies, 50),
                "click_p95_ms": percentile(latencies, 95), "click_p99_ms": percentile(latencies, 99),
                "cut_after_s": cut_at[0] if cut_at else None,
                "failure_detection_s": settings.BROKER_FAILURE_DETECTION_S,
            }
    finally:
        local.stop_all()
        purge_lanes()
        server.shutdown()

    headers = ["bulk_hosts", "cities", "refreshed", "failed", "wall_s", "requests", "cities_per_s", "batches_per_host"]
    print_table(headers, [[r[h] for h in headers] for r in results])
    base = results[0]["cities_per_s"] if results and results[0]["bulk_hosts"] == 1 else None
    if base:
        for row in results[1:]:
            print(f"{row['bulk_hosts']} hosts: {row['cities_per_s'] / base:.2f}x one host's throughput")
    print(f"\nwith one of two bulk hosts cut off mid-refresh: {clicks_result}")
    print(f"bulk per host: concurrency={bulk.concurrency} prefetch={bulk.prefetch_multiplier}; batch "
          f"{settings.WEATHER_BATCH_SIZE}; provider latency {args.latency_ms:g} ms a request")
    path = write_json("scale_out", {"machine": machine(), "settings": {**vars(args),
                      "batch_size": settings.WEATHER_BATCH_SIZE, "bulk_concurrency": bulk.concurrency},
                      "results": results, "cut_off": clicks_result})
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
