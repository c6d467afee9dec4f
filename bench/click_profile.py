"""A click taken apart: each step of the POST and of the task, its time and its database round trips, at p50.

The web tier as deployed (web server behind the nginx edge) and the three pools run
with bench/click_trace.py loaded (a sitecustomize on their PYTHONPATH): each request
and each task records its steps and the round trips psycopg2 made in each. Clicks
go one after another through the HTTP API as in bench/click.py (POST a refresh,
poll its status_url every --poll-ms), after --warmup clicks that are not counted
(each web thread and worker child opens its connections then).

Two tables: the click's timeline (until the publish is confirmed, the queue hop, the
task until SUCCESS is stored, the last poll; they add up to the click), and every
step with its p50 time and round trips. Times of nested steps include the steps
below them; round trips count for the innermost step. The hooks cost a few
microseconds a step: compare the total with bench/click.py's.

    .venv/bin/python -m bench.click_profile [--clicks 200 --latency-ms 100 --label after]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench.click import Click, click, click_arguments
from bench.click_trace import POLL_STEPS, TASK_STEPS, WEB_STEPS
from tools.measure import ROOT, machine, percentile, prepare, print_table, write_json

SITECUSTOMIZE = f"""import sys
sys.path.insert(0, {str(ROOT)!r})
from bench import click_trace
click_trace.arm()
"""


def read_traces(folder: Path) -> list[dict]:
    """Every record the processes wrote."""
    records = []
    for path in folder.glob("*.jsonl"):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def step_rows(records: list[dict], steps: tuple[tuple[str, int], ...]) -> list[list[object]]:
    """Per step: p50 ms and p50 round trips over the records (a step a record did not run counts as 0)."""
    rows = []
    for name, depth in steps:
        ms = [r["steps"].get(name, {}).get("ms", 0.0) for r in records]
        trips = [r["steps"].get(name, {}).get("round_trips", 0) for r in records]
        rows.append(["  " * depth + name, percentile(ms, 50), percentile(trips, 50), sum(trips) / len(records)])
    total_trips = [sum(s["round_trips"] for s in r["steps"].values()) for r in records]
    rows.append(["whole (request or task)", percentile([r["ms"] for r in records], 50), percentile(total_trips, 50),
                 sum(total_trips) / len(records)])
    return rows


def timeline(clicks: list[Click], posts: dict[str, dict], tasks: dict[str, dict]) -> dict[str, list[float]]:
    """Per click, from sending the POST: until published, queue hop, task to SUCCESS stored, last poll."""
    parts: dict[str, list[float]] = defaultdict(list)
    for c in clicks:
        post, task = posts.get(c.task_id), tasks.get(c.task_id)
        if c.final_ms is None or post is None or task is None or "success_stored" not in task:
            continue
        seen = c.sent_at + c.final_ms / 1000
        parts["POST sent -> publish starts"].append((post["publish_start"] - c.sent_at) * 1000)
        parts["queue hop: publish starts -> task starts in the worker child"].append(
            (task["t0"] - post["publish_start"]) * 1000)
        parts["task start -> SUCCESS stored"].append((task["success_stored"] - task["t0"]) * 1000)
        parts["SUCCESS stored -> the client reads it (last poll)"].append((seen - task["success_stored"]) * 1000)
        parts["click (POST sent -> final state read)"].append(c.final_ms)
        parts["POST as the client saw it"].append(c.post_ms)
        parts["POST inside the web server"].append(post["ms"])
    return parts


def main() -> int:
    parser = click_arguments(__doc__)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    # The provider quota stays on, as deployed (its defaults hold a few hundred clicks); the
    # per-client refresh limit is lifted, since every click comes from one address.
    os.environ.update({"SECURE_HTTPS": "false", "REFRESH_RATE_LIMIT_PER_MINUTE": "100000"})
    prepare("click_profile")
    from routing import LANE_NAMES
    from tools.harness import WorkerPools, purge_lanes
    from tools.measure import fresh_cities
    from tools.simulator import FaultConfig, start_in_thread
    from tools.web_tier import web_tier
    from weather.models import City

    server = start_in_thread(config=FaultConfig(latency_ms=args.latency_ms))
    with tempfile.TemporaryDirectory(prefix="f_brain-click-profile-") as scratch:
        site, traces = Path(scratch) / "site", Path(scratch) / "traces"
        site.mkdir()
        traces.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(site),
               "CLICK_TRACE_DIR": str(traces)}
        pools = WorkerPools(env, ROOT / "bench" / "results" / "logs")
        purge_lanes()
        fresh_cities(args.clicks + args.warmup, "Profile")
        city_ids = list(City.objects.order_by("pk").values_list("pk", flat=True))
        clicks: list[Click] = []
        try:
            with web_tier(env) as tier:
                for pool in LANE_NAMES:
                    pools.start(pool)
                for i, city_id in enumerate(city_ids[:args.warmup + args.clicks]):
                    done = click(tier.edge, city_id, args.poll_ms / 1000, args.click_timeout)
                    if i >= args.warmup:
                        clicks.append(done)
                pools.stop_all()
        finally:
            pools.stop_all()
            purge_lanes()
            server.shutdown()
        records = read_traces(traces)

    counted = {c.task_id for c in clicks}
    posts = {r["task_id"]: r for r in records if r["kind"] == "web" and r.get("method") == "POST"
             and r.get("task_id") in counted}
    tasks = {r["task_id"]: r for r in records if r["kind"] == "task" and r["task_id"] in counted
             and "success_stored" in r}
    polls = [r for r in records if r["kind"] == "web" and r.get("method") == "GET"
             and any(t in (r.get("path") or "") for t in counted)]
    parts = timeline(clicks, posts, tasks)
    print(f"{len(clicks)} clicks ({sum(c.state == 'SUCCESS' for c in clicks)} SUCCESS), provider "
          f"{args.latency_ms:g} ms, status polled every {args.poll_ms:g} ms; times in ms\n")
    print_table(["click timeline", "p50_ms", "p95_ms"],
                [[name, percentile(values, 50), percentile(values, 95)] for name, values in parts.items()])
    headers = ["step", "p50_ms", "p50_round_trips", "mean_round_trips"]
    print()
    web_rows = step_rows(list(posts.values()), WEB_STEPS)
    print_table(["POST /api/cities/<id>/refresh", *headers[1:]], web_rows)
    print()
    task_rows = step_rows(list(tasks.values()), TASK_STEPS)
    print_table(["fetch_weather_for_city (worker child)", *headers[1:]], task_rows)
    print()
    poll_rows = step_rows(polls, POLL_STEPS)
    print_table(["GET /api/tasks/<id> (each poll)", *headers[1:]], poll_rows)
    connects = sum(r["connects"] for r in [*posts.values(), *tasks.values(), *polls])
    print(f"\ndatabase connections opened during the counted clicks: {connects}")
    path = write_json("click_profile", {
        "machine": machine(), "settings": vars(args), "clicks": len(clicks), "connects": connects,
        "timeline": {name: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95)} for name, v in parts.items()},
        "post_steps": [dict(zip(headers, row, strict=True)) for row in web_rows],
        "task_steps": [dict(zip(headers, row, strict=True)) for row in task_rows],
        "poll": [dict(zip(headers, row, strict=True)) for row in poll_rows],
    }, args.label)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
