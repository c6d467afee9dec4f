"""Per-task cost of each lane: its smallest real task against a bare Celery task doing the same work.

For each lane, the project's smallest real task and bench/bare.py's baseline doing the
same work with nothing of the project's machinery around it, each on a worker with the
lane's pool settings (concurrency, prefetch, acks, time limits, recycling, nice) and a
queue of the lane's type, against a zero-latency simulator, in the same run:

  bulk         a one-city refresh batch (`refresh_weather_batch`, batches of 1)
               against `refresh_city` (the city lookup, provider request and upsert)
  interactive  a click's fetch (`fetch_weather_for_city`: crash guard, quota, result
               backend, slot release) against the same `refresh_city`
  maintenance  the retention cleanup with nothing to delete (`cleanup_old_weather_data`)
               against the retention service called bare

The `noledger` variant is the project's task with EFFECTS_LEDGER=false on the worker: the
effects ledger's cost (its row and the transaction it shares with the write) is the
difference from `project`.

The `events` variant is the project's task again with TASK_EVENTS=true on the worker
(what the compose monitoring profile turns on for Flower) while a receiver consumes the
events as Flower does; it counts them, so the table shows events sent per task.

For each: --tasks messages are queued with no consumer, the worker starts, and the rate
is what it completed from the moment it consumed to the last (start-up excluded): a
reading stored for the refreshes, the queue drained for the cleanup. Database writes
are the rows inserted, updated and deleted in the run's database while the worker ran
(PostgreSQL's statistics, read after the worker exited so that everything was
flushed), per task.

    .venv/bin/python -m bench.task_cost [--tasks 2000] [--lanes bulk interactive maintenance]
                                        [--variants project noledger events bare]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable

from routing import LANE_NAMES, Priority
from tools.measure import ROOT, add_label_argument, fresh_cities, machine, prepare, print_table, write_json

FROZEN = 1_790_000_000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--lanes", nargs="+", default=list(LANE_NAMES), choices=LANE_NAMES)
    parser.add_argument("--variants", nargs="+", default=["project", "bare"],
                        choices=["project", "noledger", "events", "bare"])
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
    from weather.tasks import cleanup_old_weather_data, fetch_weather_for_city, refresh_weather_batch
    from workers.command import worker_argv
    from workers.pools import load_pools

    pools_by_name = load_pools()
    server = start_in_thread(config=FaultConfig(latency_ms=0, fixed_time=FROZEN))
    sim = Simulator(server.url)
    env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1"}
    pools = WorkerPools(env, ROOT / "bench" / "results" / "logs")

    def reset() -> list[int]:
        purge_lanes()
        fresh_cities(args.tasks, "Cost")
        sim.reset()
        sim.configure(latency_ms=0, fixed_time=FROZEN)
        return list(City.objects.order_by("pk").values_list("pk", flat=True))

    def rows_written() -> int:
        """Rows inserted, updated and deleted in this database so far, every backend's flushed statistics."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                           "WHERE datname = current_database()")
            return cursor.fetchone()[0]

    def completed(lane: str, queue: str) -> Callable[[], int]:
        """Tasks done so far: readings stored by a refresh; for the cleanup, messages no longer queued."""
        if lane == "maintenance":
            return lambda: args.tasks - queue_depth(queue)
        return WeatherData.objects.count

    def measure(lane: str, variant: str, queue: str, start_worker: Callable[[], None],
                stop_worker: Callable[[], None]) -> dict:
        done = completed(lane, queue)
        time.sleep(1)  # let every earlier backend's statistics reach the shared counters
        before = rows_written()
        start_worker()
        started, done_at_start = time.monotonic(), done()
        wait_for(lambda: done() >= args.tasks, timeout=1800, interval=0.05, what=f"{lane} {variant}: every task")
        elapsed = time.monotonic() - started
        assert queue_depth(queue) == 0
        stop_worker()
        time.sleep(1)
        written = rows_written() - before
        return {"lane": lane, "variant": variant, "tasks": args.tasks, "timed": args.tasks - done_at_start,
                "events_per_task": len(events) / args.tasks,
                "seconds": elapsed, "tasks_per_s": (args.tasks - done_at_start) / elapsed,
                "rows_written_per_task": written / args.tasks, "requests": sim.stats()["requests"]}

    def enqueue_project(lane: str, city_ids: list[int]) -> None:
        with refresh_weather_batch.app.producer_or_acquire() as producer:
            if lane == "bulk":
                run, batches = start_or_resume_run(uuid())
                for index, batch in batches:
                    refresh_weather_batch.apply_async(args=[run.pk, index, batch], producer=producer)
            elif lane == "interactive":
                for city_id in city_ids:
                    fetch_weather_for_city.apply_async(args=[city_id], priority=int(Priority.API), producer=producer)
            else:
                for _ in range(args.tasks):
                    cleanup_old_weather_data.apply_async(producer=producer)

    events: list[str] = []
    listening = threading.Event()

    def receive_events() -> None:
        """Consume every task event, as Flower does (its own exclusive queue on the events exchange)."""
        app = refresh_weather_batch.app
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": lambda event: events.append(event["type"])})
            listening.set()
            receiver.capture(limit=None, timeout=None, wakeup=False)

    results = []
    try:
        variant_env = {"project": {}, "noledger": {"EFFECTS_LEDGER": "false"}, "events": {"TASK_EVENTS": "true"}}
        for variant, extra_env in variant_env.items():
            if variant not in args.variants:
                continue
            if variant == "events":
                threading.Thread(target=receive_events, daemon=True).start()
                listening.wait(10)
            for lane in args.lanes:
                city_ids = reset()
                enqueue_project(lane, city_ids)
                events.clear()
                results.append(measure(lane, variant, lane,
                                       lambda lane=lane, extra_env=extra_env: pools.start(lane, extra_env=extra_env),
                                       lambda lane=lane: pools.stop(lane)))
        if "bare" in args.variants:
            # Imported after every project run: its app becomes this process's current one,
            # which the project's shared tasks would then publish through.
            from bench import bare

            for lane in args.lanes:
                pool = pools_by_name[lane]
                city_ids = reset()
                queue = bare.bare_queue(lane)
                with bare.app.connection_for_write() as conn:
                    for declared in bare.app.conf.task_queues:
                        declared.bind(conn.default_channel).declare()
                        conn.default_channel.queue_purge(declared.name)
                    with bare.app.producer_or_acquire(conn.Producer()) as producer:
                        for index in range(args.tasks):
                            if lane == "maintenance":
                                bare.cleanup.apply_async(queue=queue, producer=producer)
                            else:
                                bare.refresh_city.apply_async(args=[city_ids[index]], queue=queue, producer=producer)
                argv = worker_argv(pool, loglevel="WARNING")
                argv[argv.index("-A") + 1] = "bench.bare"
                argv[argv.index("--hostname") + 1] = f"bare-{lane}@%h"
                argv[argv.index("--queues") + 1] = queue
                command = ["nice", "-n", str(pool.cpu_nice), sys.executable, "-m", *argv]
                results.append(measure(
                    lane, "bare", queue,
                    lambda command=command, queue=queue, lane=lane: pools.start_command(
                        "bare", command, {**env, "BARE_LANE": lane}, queues=[queue]),
                    lambda: pools.stop("bare")))
    finally:
        pools.stop_all()
        purge_lanes()
        server.shutdown()

    for result in results:
        bare_rate = next((r["tasks_per_s"] for r in results if r["variant"] == "bare" and r["lane"] == result["lane"]),
                         None)
        result["of_bare"] = result["tasks_per_s"] / bare_rate if bare_rate else None
    headers = ["lane", "variant", "tasks", "timed", "seconds", "tasks_per_s", "of_bare", "rows_written_per_task",
               "events_per_task", "requests"]
    print_table(headers, [[r[h] if r[h] is not None else "-" for h in headers] for r in results])
    for lane in args.lanes:
        pool = pools_by_name[lane]
        print(f"{lane} pool: concurrency={pool.concurrency} prefetch={pool.prefetch_multiplier} "
              f"acks_late={pool.acks_late} max_tasks_per_child={pool.max_tasks_per_child} nice={pool.cpu_nice}")
    path = write_json("task_cost", {"machine": machine(), "settings": vars(args), "results": results}, args.label)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
