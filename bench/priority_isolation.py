"""Priority isolation: interactive latency under a bulk flood, this topology vs one default worker.

Scenarios, in one run on one machine:
  idle      the three pools, no bulk backlog
  topology  the three pools, bulk flooded with --bulk-tasks batch refreshes
  baseline  one `celery worker` with Celery's defaults consuming every queue, same flood

Interactive fetches go out at a steady --rate; enqueue-to-start and
enqueue-to-finish come from the result backend (date_started, date_done) against
the enqueue time taken here. Fetches not finished within --window seconds after
the last one was sent are counted as unfinished (their latency is at least that).

    .venv/bin/python -m bench.priority_isolation [--bulk-tasks 10000 --interactive 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

from tools.measure import ROOT, machine, percentile, prepare, print_table, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk-tasks", type=int, default=10_000)
    parser.add_argument("--interactive", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="interactive fetches per second")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="simulated provider latency a request")
    parser.add_argument("--latency-per-location-ms", type=float, default=0.0,
                        help="added per location asked for (a bulk batch then costs more than one city)")
    parser.add_argument("--cities-per-bulk-task", type=int, default=50)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()

    # The provider quota would ration the interactive fetches themselves; this
    # measures queueing, so the quota is lifted (bench.refresh_all does the same).
    os.environ.update({"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0"})
    prepare("bench")
    from celery import current_app as app
    from django.db import connection
    from django_celery_results.models import TaskResult

    from routing import LANE_NAMES, Priority
    from tools.harness import WorkerPools, purge_lanes
    from tools.simulator import FaultConfig, start_in_thread
    from weather.dispatch import enqueue_city_fetch
    from weather.models import City, RefreshBatch, RefreshRun
    from weather.tasks import refresh_weather_batch

    sim = start_in_thread(config=FaultConfig(latency_ms=args.latency_ms,
                                             latency_per_location_ms=args.latency_per_location_ms))
    needed = max(args.interactive, args.cities_per_bulk_task)
    if City.objects.count() < needed:
        from django.core.management import call_command

        call_command("load_cities", limit=max(needed, 1000), verbosity=0)
    city_ids = list(City.objects.order_by("pk").values_list("pk", flat=True)[: max(needed, 1000)])
    env = {**os.environ, "WEATHER_API_URL": sim.url, "PYTHONUNBUFFERED": "1"}
    pools = WorkerPools(env, ROOT / "bench" / "results" / "logs")

    def reset_state() -> None:
        purge_lanes()
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE weather_weatherdata, django_celery_results_taskresult, "
                           "weather_refreshbatch, weather_refreshrun")

    def flood() -> float:
        run = RefreshRun.objects.create(batch_size=args.cities_per_bulk_task, batches_total=args.bulk_tasks)
        RefreshBatch.objects.bulk_create(
            (RefreshBatch(run=run, index=i, cities=args.cities_per_bulk_task) for i in range(args.bulk_tasks)),
            batch_size=5000,
        )
        started = time.monotonic()
        n = args.cities_per_bulk_task
        with app.producer_or_acquire() as producer:
            for index in range(args.bulk_tasks):
                offset = (index * n) % (len(city_ids) - n)
                refresh_weather_batch.apply_async(args=[run.pk, index, city_ids[offset:offset + n]],
                                                  producer=producer)
        return time.monotonic() - started

    def measure(name: str, start_workers, with_flood: bool) -> dict:
        reset_state()
        flood_s = flood() if with_flood else 0.0
        start_workers()
        # Let the bulk pool reach steady state before the first interactive fetch.
        time.sleep(2.0 if with_flood else 0.5)
        sent: dict[str, float] = {}
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        for i in range(args.interactive):
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            task_id = enqueue_city_fetch(city_ids[i % len(city_ids)], Priority.CLICK).task_id
            sent[task_id] = datetime.now(UTC).timestamp()
        deadline = time.monotonic() + args.window
        def finished_count() -> int:
            return TaskResult.objects.filter(task_id__in=list(sent), status="SUCCESS").count()
        while time.monotonic() < deadline and finished_count() < len(sent):
            time.sleep(0.5)
        rows = TaskResult.objects.filter(task_id__in=list(sent), status="SUCCESS").values_list(
            "task_id", "date_started", "date_done")
        to_start = [(s.timestamp() - sent[t]) * 1000 for t, s, _ in rows if s]
        to_finish = [(d.timestamp() - sent[t]) * 1000 for t, _, d in rows]
        bulk_done = RefreshBatch.objects.exclude(status=RefreshBatch.Status.PENDING).count()
        pools.stop_all()
        return {
            "scenario": name, "sent": len(sent), "finished": len(to_finish),
            "start_p50_ms": percentile(to_start, 50), "start_p95_ms": percentile(to_start, 95),
            "start_p99_ms": percentile(to_start, 99),
            "finish_p50_ms": percentile(to_finish, 50), "finish_p95_ms": percentile(to_finish, 95),
            "finish_p99_ms": percentile(to_finish, 99),
            "flood_publish_s": round(flood_s, 1), "bulk_tasks_done": bulk_done,
        }

    def topology() -> None:
        for pool in LANE_NAMES:
            pools.start(pool)

    def baseline() -> None:
        argv = [sys.executable, "-m", "celery", "-A", "server_config", "worker", "-n", "baseline@%h",
                "-Q", ",".join(LANE_NAMES), "--loglevel", "WARNING"]
        pools.start_command("baseline", argv, env, queues=list(LANE_NAMES))

    results = []
    try:
        results.append(measure("idle", topology, with_flood=False))
        results.append(measure("topology", topology, with_flood=True))
        results.append(measure("baseline", baseline, with_flood=True))
    finally:
        pools.stop_all()
        reset_state()
        sim.shutdown()

    headers = ["scenario", "sent", "finished", "start_p50_ms", "start_p95_ms", "start_p99_ms",
               "finish_p50_ms", "finish_p95_ms", "finish_p99_ms", "bulk_tasks_done"]
    print_table(headers, [[r[h] for h in headers] for r in results])
    by = {r["scenario"]: r for r in results}
    # Enqueue-to-start is the queueing isolation itself; enqueue-to-finish adds
    # the provider's own latency, a floor every scenario shares.
    ratios = {}
    for phase in ("start", "finish"):
        key = f"{phase}_p99_ms"
        ratios[phase] = {
            "topology_over_idle_p99": by["topology"][key] / by["idle"][key],
            "baseline_over_topology_p99": by["baseline"][key] / by["topology"][key],
        }
        print(f"\n{phase}: topology p99 / idle p99 = "
              f"{ratios[phase]['topology_over_idle_p99']:.2f}  (target <= 3)")
        print(f"{phase}: baseline p99 / topology p99 = "
              f"{ratios[phase]['baseline_over_topology_p99']:.1f}  (target >= 50)")
    print(f"baseline unfinished: {by['baseline']['sent'] - by['baseline']['finished']}")
    path = write_json("priority_isolation", {
        "machine": machine(), "settings": vars(args), "results": results, "ratios": ratios,
    })
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
