"""A click through the HTTP API: POST a refresh, follow its status_url to a final state; what we add to the provider.

The web tier as deployed (the web server behind the nginx edge, tools/web_tier.py), the
pools of the registry or one default worker, the simulator answering in --latency-ms.
Clicks go one after another, each for another city; a click's time is from sending the
POST to reading a final state (SUCCESS or FAILURE) from status_url, which is polled
every --poll-ms. Its overhead is that time minus the provider's latency. Beside it, the
worker's own timestamps from the result backend (date_started, date_done) counted from
the POST's start, which split the time into the POST, the queue hop, the task and the
last poll. Scenarios:

  pools, idle             the three pools, nothing else queued
  pools, bulk flood       the same while --bulk-tasks refresh batches wait on bulk
  default worker, idle    one `celery worker` with Celery's defaults consuming every queue
  default worker, flood   the same worker, the same flood

A click not final within --click-timeout is counted unfinished; a scenario stops after
three of those in a row.

    .venv/bin/python -m bench.click [--clicks 200 --latency-ms 100 --bulk-tasks 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from tools.measure import ROOT, add_label_argument, machine, percentile, prepare, print_table, write_json

FINAL = ("SUCCESS", "FAILURE")


def _json(request: urllib.request.Request | str) -> dict:
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@dataclass
class Click:
    """One click as the client saw it: when it started (wall clock), the 202, the final state read."""

    task_id: str
    sent_at: float
    post_ms: float
    final_ms: float | None = None
    state: str = ""


def click(edge: str, city_id: int, poll_s: float, timeout_s: float) -> Click:
    """POST a refresh and poll its status_url until a final state or `timeout_s`."""
    sent_at, started = time.time(), time.perf_counter()
    accepted = _json(urllib.request.Request(f"{edge}/api/cities/{city_id}/refresh", data=b"", method="POST"))
    result = Click(accepted["task_id"], sent_at, (time.perf_counter() - started) * 1000)
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        state = _json(f"{edge}{accepted['status_url']}")["state"]
        if state in FINAL:
            result.final_ms, result.state = (time.perf_counter() - started) * 1000, state
            break
        time.sleep(poll_s)
    return result


def click_arguments(description: str | None) -> argparse.ArgumentParser:
    """The options of a run of clicks: how many, the provider's latency, how often and how long to poll, a label."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--poll-ms", type=float, default=2.0)
    parser.add_argument("--click-timeout", type=float, default=10.0)
    add_label_argument(parser)
    return parser


def main() -> int:
    parser = click_arguments(__doc__)
    parser.add_argument("--bulk-tasks", type=int, default=2000)
    parser.add_argument("--cities-per-bulk-task", type=int, default=50)
    args = parser.parse_args()

    os.environ.update({"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0",
                       "SECURE_HTTPS": "false", "REFRESH_RATE_LIMIT_PER_MINUTE": "100000"})
    prepare("click")
    from celery import current_app as app
    from django_celery_results.models import TaskResult

    from routing import LANE_NAMES
    from tools.harness import WorkerPools, purge_lanes
    from tools.measure import fresh_cities
    from tools.simulator import FaultConfig, start_in_thread
    from tools.web_tier import web_tier
    from weather.models import City, RefreshBatch, RefreshRun
    from weather.tasks import refresh_weather_batch

    cities = max(args.clicks, args.cities_per_bulk_task, 1000)
    server = start_in_thread(config=FaultConfig(latency_ms=args.latency_ms))
    env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1"}
    pools = WorkerPools(env, ROOT / "bench" / "results" / "logs")

    def flood() -> None:
        city_ids = list(City.objects.order_by("pk").values_list("pk", flat=True))
        n = args.cities_per_bulk_task
        run = RefreshRun.objects.create(batch_size=n, batches_total=args.bulk_tasks)
        RefreshBatch.objects.bulk_create((RefreshBatch(run=run, index=i, cities=n) for i in range(args.bulk_tasks)),
                                         batch_size=5000)
        with app.producer_or_acquire() as producer:
            for index in range(args.bulk_tasks):
                offset = (index * n) % (len(city_ids) - n)
                refresh_weather_batch.apply_async(args=[run.pk, index, city_ids[offset:offset + n]],
                                                  producer=producer)

    def the_pools() -> None:
        for pool in LANE_NAMES:
            pools.start(pool)

    def default_worker() -> None:
        argv = [sys.executable, "-m", "celery", "-A", "server_config", "worker", "-n", "default@%h",
                "-Q", ",".join(LANE_NAMES), "--loglevel", "WARNING"]
        pools.start_command("default", argv, env, queues=list(LANE_NAMES))

    def scenario(name: str, start_workers: Callable[[], None], with_flood: bool, edge: str) -> dict:
        purge_lanes()
        fresh_cities(cities, "Click")
        if with_flood:
            flood()
        start_workers()
        time.sleep(2.0)  # the workers at steady state (the flood under way) before the first click
        city_ids = list(City.objects.order_by("pk").values_list("pk", flat=True))
        clicks: list[Click] = []
        in_a_row = 0
        for i in range(args.clicks):
            clicks.append(click(edge, city_ids[i % len(city_ids)], args.poll_ms / 1000, args.click_timeout))
            in_a_row = in_a_row + 1 if clicks[-1].final_ms is None else 0
            if in_a_row == 3:
                break
        pools.stop_all()
        final = [c for c in clicks if c.final_ms is not None]
        totals = [c.final_ms for c in final]
        # The worker's own timestamps (result backend): when the task started and was done, from the POST's start.
        stamps = {t: (s, d) for t, s, d in TaskResult.objects.filter(task_id__in=[c.task_id for c in final])
                  .values_list("task_id", "date_started", "date_done")}
        started = [(stamps[c.task_id][0].timestamp() - c.sent_at) * 1000
                   for c in final if c.task_id in stamps and stamps[c.task_id][0]]
        done = [(stamps[c.task_id][1].timestamp() - c.sent_at) * 1000 for c in final if c.task_id in stamps]
        return {
            "scenario": name, "clicks": len(clicks), "final": len(final),
            "failed": sum(c.state != "SUCCESS" for c in final), "unfinished": len(clicks) - len(final),
            "post_p50_ms": percentile([c.post_ms for c in clicks], 50),
            "started_p50_ms": percentile(started, 50), "done_p50_ms": percentile(done, 50),
            "p50_ms": percentile(totals, 50), "p95_ms": percentile(totals, 95), "p99_ms": percentile(totals, 99),
            "overhead_p50_ms": percentile(totals, 50) - args.latency_ms,
        }

    results = []
    try:
        with web_tier(env) as tier:
            results.append(scenario("pools, idle", the_pools, False, tier.edge))
            results.append(scenario("pools, bulk flood", the_pools, True, tier.edge))
            results.append(scenario("default worker, idle", default_worker, False, tier.edge))
            results.append(scenario("default worker, flood", default_worker, True, tier.edge))
    finally:
        pools.stop_all()
        purge_lanes()
        server.shutdown()

    headers = ["scenario", "clicks", "final", "failed", "unfinished", "post_p50_ms", "started_p50_ms", "done_p50_ms",
               "p50_ms", "p95_ms", "p99_ms", "overhead_p50_ms"]
    print_table(headers, [[r[h] for h in headers] for r in results])
    idle, flooded = results[0], results[1]
    print(f"\npools: flood p99 / idle p99 = {flooded['p99_ms'] / idle['p99_ms']:.2f} (target <= 1.2); "
          f"idle overhead p50 = {idle['overhead_p50_ms']:.1f} ms (target <= 10); provider {args.latency_ms:g} ms, "
          f"status polled every {args.poll_ms:g} ms")
    path = write_json("click", {"machine": machine(), "settings": vars(args), "results": results}, args.label)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
