"""Fault report: run each fault scenario against real processes and print what was lost or applied twice.

Scenarios (loopback only, each bounded in time):
  child-kill      SIGKILL a pool child mid-batch, --kills times, during a refresh
  worker-kill     SIGKILL a whole pool (main process and children), --kills times, restarting it
  broker-restart  rabbitmqctl stop_app, 3 s away, start_app during a refresh
  db-outage       PostgreSQL stopped for 3 s during a refresh
  provider-30pct  30 % of provider answers fail (500, 429, timeout, malformed),
                  under the real free-tier quota (600 locations a minute)

With --cluster, the scenarios of a three-node RabbitMQ cluster instead (tools/cluster_faults.py:
the bulk leader killed, publishes during its election, no majority, a poison message).

Columns: batches enqueued, batches completed (done or reported failed), lost
(still pending at the end), re-run (provider reservations beyond one a batch:
retries and redeliveries of at-least-once delivery), applied twice (units of
work, a reading slot or a batch, whose effect the effects ledger saw committed
more than once, keyed by the provider's slot so that a broken key shows), the
most locations granted in any sliding minute against the bulk cap, and whether every pool was still the process it
was at the start (kill scenarios restart the bulk pool on purpose).

    .venv/bin/python -m tools.fault_report [--cities 1000 --kills 10] [--cluster]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from tools.faults import FLAKY_PROVIDER, FROZEN, KILL_ENV, broker_stopped, database_stopped, kill_mid_refresh, outcome
from tools.rabbit_cluster import RabbitCluster, rabbit_cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cities", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--cluster", action="store_true", help="the cluster scenarios, on a test cluster of three")
    args = parser.parse_args()
    if args.cluster:
        with rabbit_cluster(3) as cluster:
            return report(args, cluster)
    return report(args, None)


def report(args: argparse.Namespace, cluster: RabbitCluster | None) -> int:
    """Run the scenarios (on `cluster` when given), print the table, write the JSON; 0 when nothing was lost."""
    # Quota lifted except where a scenario sets it; the crash cap is the default but
    # in the kill scenarios, which cut the same batch short more often than that.
    unlimited = {"WEATHER_QUOTA_PER_MINUTE": "0", "WEATHER_QUOTA_PER_HOUR": "0", "WEATHER_QUOTA_PER_DAY": "0"}
    os.environ.update({**unlimited, "WEATHER_BATCH_SIZE": "20", "WEATHER_RETRY_BASE_SECONDS": "0.2",
                       "WEATHER_READ_TIMEOUT": "1.5"})
    from weather import provider

    free_tier = {"WEATHER_QUOTA_PER_MINUTE": str(provider.FREE_TIER_LOCATIONS_PER_MINUTE),
                 "WEATHER_QUOTA_PER_HOUR": str(provider.FREE_TIER_LOCATIONS_PER_HOUR),
                 "WEATHER_QUOTA_PER_DAY": str(provider.FREE_TIER_LOCATIONS_PER_DAY),
                 "WEATHER_QUOTA_INTERACTIVE_RESERVE": "0.1"}
    from tools.measure import ROOT, fresh_cities, machine, prepare, print_table, write_json

    prepare("faults", broker_url=cluster.broker_url if cluster else None)
    from routing import LANE_NAMES
    from tools.harness import Simulator, WorkerPools, purge_lanes, queue_consumers, run_summary, wait_for
    from tools.simulator import start_in_thread
    from weather.tasks import update_all_weather_data

    server = start_in_thread()
    sim = Simulator(server.url)
    env = {**os.environ, "WEATHER_API_URL": server.url, "PYTHONUNBUFFERED": "1"}
    pools = WorkerPools(env, ROOT / "bench" / "results" / "fault-logs")

    def fresh(cities: int = args.cities) -> None:
        purge_lanes()
        fresh_cities(cities, "Fault")
        sim.reset()
        sim.configure(latency_ms=args.latency_ms, fixed_time=FROZEN, timeout_sleep_s=FLAKY_PROVIDER["timeout_sleep_s"],
                      retry_after_s=FLAKY_PROVIDER["retry_after_s"])

    def start_refresh() -> int:
        result = update_all_weather_data.delay().get(timeout=60)
        wait_for(lambda: (s := run_summary(result["run_id"])) and s["batches_done"] >= 3, timeout=60)
        return result["run_id"]

    def kill_loop(run_id: int, whole: bool) -> int:
        made = kill_mid_refresh(pools, run_id, args.kills, children=not whole, workers=whole)
        return sum(made.values())

    def broker_restart(run_id: int) -> int:
        with broker_stopped():
            time.sleep(3)
        return 1

    def db_outage(run_id: int) -> int:
        with database_stopped():
            time.sleep(3)
        return 1

    def flaky_provider(run_id: int) -> int:
        return 1

    if cluster is not None:
        from tools import cluster_faults

        try:
            rows = cluster_faults.run(cluster, args.cities, args.latency_ms, ROOT / "bench" / "results" / "fault-logs",
                                      sim, server.url, fresh)
        finally:
            purge_lanes()
            server.shutdown()
        print_table(cluster_faults.HEADERS, rows)
        path = write_json("fault_report_cluster", {
            "machine": machine(), "settings": vars(args),
            "rows": [dict(zip(cluster_faults.HEADERS, r, strict=True)) for r in rows]})
        print(f"written {path}")
        return 0 if all(r[5] == 0 and r[6] == 0 for r in rows) else 1

    scenarios = {
        "child-kill": lambda run: kill_loop(run, whole=False),
        "worker-kill": lambda run: kill_loop(run, whole=True),
        "broker-restart": broker_restart,
        "db-outage": db_outage,
        "provider-30pct": flaky_provider,
    }
    rows = []
    try:
        for pool in LANE_NAMES:
            pools.start(pool)
        for name, inject in scenarios.items():
            if args.only and name not in args.only:
                continue
            fresh()
            bulk_env = KILL_ENV if name.endswith("-kill") else free_tier if name == "provider-30pct" else {}
            pools.start("bulk", extra_env=bulk_env)
            if name == "provider-30pct":
                sim.configure(**FLAKY_PROVIDER)
            first_pids = {pool: pools.processes[pool].pid for pool in LANE_NAMES}
            run_id = start_refresh()
            trials = inject(run_id)
            for lane in LANE_NAMES:
                wait_for(lambda lane=lane: queue_consumers(lane) >= 1, timeout=120, what=f"{lane} back")
            # A run that does not finish in time is reported, batch by batch, as lost below.
            with contextlib.suppress(AssertionError):
                wait_for(lambda run_id=run_id: (s := run_summary(run_id)) and s["finished"], timeout=300, interval=0.5)
            counted = outcome(run_id)
            cap = (int(int(free_tier["WEATHER_QUOTA_PER_MINUTE"])
                       * (1 - float(free_tier["WEATHER_QUOTA_INTERACTIVE_RESERVE"])))
                   if name == "provider-30pct" else "-")
            same_pools = all(pools.alive(p) and pools.processes[p].pid == first_pids[p] for p in LANE_NAMES)
            rows.append([name, trials, counted.enqueued, counted.completed, counted.lost, counted.rerun,
                         counted.applied_twice, counted.cities_ok, counted.cities_failed, counted.busiest_minute, cap,
                         "yes" if same_pools else "restarted"])
            print(f"{name}: done", flush=True)
    finally:
        pools.stop_all()
        purge_lanes()
        server.shutdown()

    headers = ["scenario", "trials", "enqueued", "completed", "lost", "re-run", "applied twice",
               "cities_ok", "cities_failed", "max_locations_per_minute", "bulk_cap_per_minute", "same_pools"]
    print_table(headers, rows)
    path = write_json("fault_report", {"machine": machine(), "settings": vars(args),
                                       "rows": [dict(zip(headers, r, strict=True)) for r in rows]})
    print(f"written {path}")
    over_quota = any(isinstance(r[10], int) and r[9] > r[10] for r in rows)
    return 0 if all(r[4] == 0 and r[6] == 0 for r in rows) and not over_quota else 1


if __name__ == "__main__":
    sys.exit(main())
