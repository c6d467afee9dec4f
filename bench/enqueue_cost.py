"""What enqueueing one fetch costs the caller: Django's Tasks API against Celery's `.apply_async`.

The web process's side only: from the call to the broker's confirm, no worker consuming
(the messages wait in the lane of a vhost of the run's own, purged afterwards). Both
publish the same fetch on the interactive lane at a click's priority, with a request's
retry policy and confirm timeout, outside a transaction (published at once):

  apply_async   fetch_weather_for_city.apply_async(...): a message
  django        weather.jobs.fetch_city.using(priority=100).enqueue(...): the message, and the
                PENDING result row that lets get_result answer from the moment there is an id

Rounds alternate the two, so a slower minute of the machine weighs on both.

    .venv/bin/python -m bench.enqueue_cost [--tasks 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from tools.measure import add_label_argument, fresh_cities, machine, percentile, prepare, print_table, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="enqueues per variant and round")
    parser.add_argument("--rounds", type=int, default=4)
    add_label_argument(parser)
    args = parser.parse_args()
    prepare("enqueue")
    fresh_cities(1, "Enqueue")

    from routing import Priority
    from tools.harness import purge_lanes
    from weather.jobs import fetch_city
    from weather.models import City
    from weather.publishing import REQUEST_CONFIRM_TIMEOUT_S, request_publish_retry
    from weather.tasks import fetch_weather_for_city

    city_id = City.objects.get().pk
    urgent = fetch_city.using(priority=100)
    variants: dict[str, Callable[[], object]] = {
        "apply_async": lambda: fetch_weather_for_city.apply_async(
            args=[city_id], priority=int(Priority.CLICK), retry=True, retry_policy=request_publish_retry(),
            confirm_timeout=REQUEST_CONFIRM_TIMEOUT_S),
        "django": lambda: urgent.enqueue(city_id),
    }
    timings: dict[str, list[float]] = {name: [] for name in variants}
    purge_lanes()
    for _ in range(args.rounds):
        for name, enqueue in variants.items():
            for _ in range(args.tasks):
                started = time.perf_counter()
                enqueue()
                timings[name].append((time.perf_counter() - started) * 1000)
            purge_lanes()

    rows, results = [], {}
    base = statistics.mean(timings["apply_async"])
    for name, values in timings.items():
        mean = statistics.mean(values)
        results[name] = {"tasks": len(values), "mean_ms": mean, "p50_ms": percentile(values, 50),
                         "p95_ms": percentile(values, 95), "per_second": 1000 / mean}
        rows.append([name, len(values), mean, percentile(values, 50), percentile(values, 95), round(1000 / mean),
                     f"{(mean - base) / base:+.0%}"])
    print_table(["variant", "enqueues", "mean ms", "p50 ms", "p95 ms", "per second", "against apply_async"], rows)
    write_json("enqueue_cost", {"machine": machine(), "tasks": args.tasks, "rounds": args.rounds, "results": results},
               args.label)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
