"""Click figures through the compose stack and through `scripts/run`, in one run, the same clicks against each.

A click is bench.click's: POST a refresh through the run mode's front door, poll its
status_url to a final state; its overhead is that time minus the provider's latency.

  scripts/run   the Procfile topology on this machine (granian, three pools, beat), on
                PostgreSQL and RabbitMQ here, its own simulator at --latency-ms
  compose       `docker compose up` on the Docker engine here, test stand-ins for the
                official images (tools/standins/), the simulator service at --latency-ms,
                clicks through the nginx edge's published port

Both with the provider quota and the refresh rate limit lifted, so only the path is timed.

    .venv/bin/python -m bench.compose_click [--clicks 100 --latency-ms 100 --broker 3]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench.click import Click, click, click_arguments
from tools.harness import wait_for
from tools.measure import ROOT, machine, percentile, prepare, print_table, write_json
from tools.web_tier import free_port

UNLIMITED = {"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0",
             "REFRESH_RATE_LIMIT_PER_MINUTE": "100000"}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _answers(url: str) -> bool:
    try:
        return _get(url).get("status") == "ready"
    except OSError:
        return False


def clicks_through(edge: str, city_ids: list[int], count: int, poll_s: float, timeout_s: float) -> list[Click]:
    """`count` clicks one after another, each for another city."""
    return [click(edge, city_ids[i % len(city_ids)], poll_s, timeout_s) for i in range(count)]


def summary(where: str, clicks: list[Click], latency_ms: float) -> dict:
    totals = [c.final_ms for c in clicks if c.final_ms is not None]
    return {"run mode": where, "clicks": len(clicks), "success": sum(c.state == "SUCCESS" for c in clicks),
            "post_p50_ms": percentile([c.post_ms for c in clicks], 50), "p50_ms": percentile(totals, 50),
            "p95_ms": percentile(totals, 95), "p99_ms": percentile(totals, 99),
            "overhead_p50_ms": percentile(totals, 50) - latency_ms}


def through_scripts_run(args: object, var_dir: Path) -> dict:
    """The README's first command on this machine's PostgreSQL and RabbitMQ; clicks on its web port."""
    port, sim_port = free_port(), free_port()
    env = {**os.environ, **UNLIMITED, "VAR_DIR": str(var_dir), "PORT": str(port), "SIMULATOR_PORT": str(sim_port),
           "DEMO_CITIES": str(max(args.clicks, 100)), "SECURE_HTTPS": "false"}
    with open(var_dir / "scripts-run.log", "w") as log:
        process = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/readyz"), timeout=180, interval=0.5, what="scripts/run to answer /readyz")
        config = urllib.request.Request(f"http://127.0.0.1:{sim_port}/__sim/config",
                                        data=json.dumps({"latency_ms": args.latency_ms}).encode())
        urllib.request.urlopen(config, timeout=10).close()
        ids = [city["id"] for city in _get(f"{base}/api/cities/?page_size=100")["results"]]
        return summary("scripts/run", clicks_through(base, ids, args.clicks, args.poll_ms / 1000, args.click_timeout),
                       args.latency_ms)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def through_compose(args: object, folder: Path) -> dict:
    """The compose stack with the stand-in images; clicks through the edge."""
    from tools.compose_stack import build_app_image, compose_stack

    build_app_image()
    env = {**UNLIMITED, "DEMO_CITIES": str(max(args.clicks, 100))}
    with compose_stack(folder, args.broker, env=env) as stack:
        stack.up()
        stack.wait_healthy(["web", "edge", "worker-interactive", "simulator"])
        stack.simulator("/__sim/config", {"latency_ms": args.latency_ms})
        ids = [city["id"] for city in stack.json("GET", "/api/cities/?page_size=100")[1]["results"]]
        base = stack.url("")
        return summary(f"compose (RabbitMQ {args.broker} stand-in)",
                       clicks_through(base, ids, args.clicks, args.poll_ms / 1000, args.click_timeout),
                       args.latency_ms)


def main() -> int:
    parser = click_arguments(__doc__)
    parser.set_defaults(clicks=100)
    parser.add_argument("--broker", choices=["3", "4"], default="3", help="the RabbitMQ stand-in of the compose stack")
    args = parser.parse_args()
    prepare("compose_click")
    results = []
    with tempfile.TemporaryDirectory(prefix="f-brain-bench-") as scratch:
        results.append(through_scripts_run(args, Path(scratch)))
        results.append(through_compose(args, Path(scratch) / "stack"))
    headers = list(results[0])
    print_table(headers, [[r[h] for h in headers] for r in results])
    print(f"\nprovider {args.latency_ms:g} ms, status polled every {args.poll_ms:g} ms, one click at a time")
    path = write_json("compose_click", {"machine": machine(), "settings": vars(args), "results": results}, args.label)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
