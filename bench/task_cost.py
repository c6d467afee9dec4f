"""Per-task cost of the bulk lane: its smallest real task against a bare Celery task doing the same work.

The project's task is a one-city refresh batch (`refresh_weather_batch`, batches of 1);
the baseline is bench/bare.py's `refresh_city` (same city lookup, provider request and
upsert, nothing else), each on a worker with the bulk pool's settings (concurrency,
prefetch, acks, time limits, recycling, nice) and a queue of the same type, against a
zero-latency simulator, in the same run. For each: --tasks messages are queued with no
consumer, the worker starts, and the rate is what it completed from the moment it
consumed to the last (start-up excluded). Database writes are the rows inserted,
updated and deleted in the run's database while the worker ran (PostgreSQL's
statistics, read after the worker exited so that everything was flushed), per task.

    .venv/bin/python -m bench.task_cost [--tasks 2000] [--variants project bare]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from tools.measure import ROOT, add_label_argument, fresh_cities, machine, prepare, print_table, write_json

FROZEN = 1_790_000_000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=["project", "bare"], choices=["project", "bare"])
    add_label_argument(parser)
    args = parser.parse_args()

    os.environ.update({"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0",
                       "WEATHER_BATCH_SIZE": "1"})
    prepare("taskcost")
    from celery import uuid
    from django.db import connection

    from tools.harness import Simulator, WorkerPools, purge_lanes, queue_depth, wait_for
    from tools.simulator import FaultConfig, start_in_thread
    from weather.models import City, WeatherData
    from weather.refresh import start_or_resume_run
    from weather.tasks import refresh_weather_batch
    from workers.command import worker_argv
    from workers.pools import load_pools

    bulk = load_pools()["bulk"]
    server = start_in_thread(config=FaultConfig(latency_ms=0, fixed_time=FROZEN))
    sim = Simulator(server.url)
    env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1"}
    pools = WorkerPools(env, ROOT / "bench" / "results" / "logs")

    def reset() -> None:
        purge_lanes()
        fresh_cities(args.tasks, "Cost")
        sim.reset()
        sim.configure(latency_ms=0, fixed_time=FROZEN)

    def rows_written() -> int:
        """Rows inserted, updated and deleted in this database so far, every backend's flushed statistics."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                           "WHERE datname = current_database()")
            return cursor.fetchone()[0]

    def measure(variant: str, queue: str, start_worker: Callable[[], None], stop_worker: Callable[[], None]) -> dict:
        time.sleep(1)  # let every earlier backend's statistics reach the shared counters
        before = rows_written()
        start_worker()
        started, done_at_start = time.monotonic(), WeatherData.objects.count()
        wait_for(lambda: WeatherData.objects.count() >= args.tasks, timeout=1800, interval=0.05,
                 what=f"{variant}: every task")
        elapsed = time.monotonic() - started
        assert queue_depth(queue) == 0
        stop_worker()
        time.sleep(1)
        written = rows_written() - before
        return {"variant": variant, "tasks": args.tasks, "timed": args.tasks - done_at_start, "seconds": elapsed,
                "tasks_per_s": (args.tasks - done_at_start) / elapsed, "rows_written_per_task": written / args.tasks,
                "requests": sim.stats()["requests"]}

    results = []
    try:
        if "project" in args.variants:
            reset()
            run, batches = start_or_resume_run(uuid())
            with refresh_weather_batch.app.producer_or_acquire() as producer:
                for index, city_ids in batches:
                    refresh_weather_batch.apply_async(args=[run.pk, index, city_ids], producer=producer)
            results.append(measure("project", "bulk", lambda: pools.start("bulk"), lambda: pools.stop("bulk")))

        if "bare" in args.variants:
            reset()
            # Imported last: it drops the project's global task signal handlers in this process too.
            from bench import bare

            with bare.app.connection_for_write() as conn:
                for queue in bare.app.conf.task_queues:
                    queue.bind(conn.default_channel).declare()
                    conn.default_channel.queue_purge(queue.name)
                with bare.app.producer_or_acquire(conn.Producer()) as producer:
                    for city_id in City.objects.order_by("pk").values_list("pk", flat=True):
                        bare.refresh_city.apply_async(args=[city_id], producer=producer)
            argv = worker_argv(bulk, loglevel="WARNING")
            argv[argv.index("-A") + 1] = "bench.bare"
            argv[argv.index("--hostname") + 1] = "bare@%h"
            argv[argv.index("--queues") + 1] = bare.BARE_QUEUE
            command = ["nice", "-n", str(bulk.cpu_nice), sys.executable, "-m", *argv]
            results.append(measure(
                "bare", bare.BARE_QUEUE,
                lambda: pools.start_command("bare", command, env, queues=[bare.BARE_QUEUE]),
                lambda: pools.stop("bare")))
    finally:
        pools.stop_all()
        purge_lanes()
        server.shutdown()

    bare_rate = next((r["tasks_per_s"] for r in results if r["variant"] == "bare"), None)
    for result in results:
        result["of_bare"] = result["tasks_per_s"] / bare_rate if bare_rate else None
    headers = ["variant", "tasks", "timed", "seconds", "tasks_per_s", "of_bare", "rows_written_per_task", "requests"]
    print_table(headers, [[r[h] if r[h] is not None else "-" for h in headers] for r in results])
    print(f"bulk pool: concurrency={bulk.concurrency} prefetch={bulk.prefetch_multiplier} "
          f"acks_late={bulk.acks_late} max_tasks_per_child={bulk.max_tasks_per_child} nice={bulk.cpu_nice}")
    path = write_json("task_cost", {"machine": machine(), "settings": vars(args), "results": results}, args.label)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
