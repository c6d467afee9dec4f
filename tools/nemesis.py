"""The nemesis: the whole topology under a workload and a seeded schedule of overlapping faults, then a checker.

    .venv/bin/python -m tools.nemesis --seed 7 --minutes 3 [--cities 300] [--cluster | --hosts 2]

The topology is the real one: the web tier (web server and nginx edge), the three pools
through the launcher, two beats sharing the lease, on a database and a vhost of the run's
own. The workload clicks through the API at a steady rate, starts daily summaries,
refreshes every city, runs the cleanup, replays the dead letters and sends a few poison
messages (fetches of cities that do not exist); a periodic refresh every
PERIODIC_EVERY_S seconds comes from the beats. Meanwhile the faults of the schedule
land, overlapping: a child or a whole pool killed, a pool paused past its heartbeat bound,
PostgreSQL restarted, the beat leader paused past its lease, a broker memory alarm, a slow
or failing provider; with --cluster a broker node killed and restarted, with --hosts N
bulk replicas on test hosts and a host cut off. Then the faults end, the run settles,
and tools/checker.py reads the whole history. The same seed replays the same schedule
(printed first). Exits 1 on any violation.

Loopback, the project's own test cluster and its own test hosts only. What it changes on
the shared broker (a memory alarm) and the machine's PostgreSQL (a restart) is put back
whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

# Heartbeats of a few seconds, so a paused or cut-off worker's messages come back within the run.
HEARTBEAT_S = 4
LEASE_S = 3
PERIODIC_EVERY_S = 30
# The workload's pace. Its refreshes come as bursts of every city that overrun a minute's quota now and
# then (so deferrals happen), but on average it asks for less than the quota gives (workload_share): a
# workload asking for more builds a backlog that grows with the run's length and never settles (a 30-minute
# run asking about 880 locations a minute of 600 ended with refreshes pending).
CLICK_EVERY_S = 0.3
SUMMARY_EVERY_S = 4.0
REFRESH_EVERY_S = 60.0
CLEANUP_EVERY_S = 30.0
REPLAY_EVERY_S = 15.0
POISON = 2
# The last fault ends this long before the workload stops, and the run then has this long to settle.
QUIET_S = 15
SETTLE_S = 300
# The most of the quota the workload may ask for on average: faults stop work for a while, and what
# they held back is caught up from the rest.
WORKLOAD_SHARE_MAX = 0.85


@dataclass(frozen=True)
class FaultKind:
    """A fault the nemesis can do: what it may hit, and how long it holds before it is undone."""

    targets: tuple[str, ...]
    shortest_s: float
    longest_s: float
    needs: str = ""  # "cluster" or "hosts": only in runs that have them


def fault_kinds(hosts: int) -> dict[str, FaultKind]:
    """Every fault, with the holds that make it mean something (a pause longer than the heartbeat bound)."""
    from routing.broker import failure_detection_bound

    pools = ("interactive", "bulk", "maintenance")
    bound = failure_detection_bound(HEARTBEAT_S)
    return {
        "kill-child": FaultKind(pools, 0, 0),
        "kill-pool": FaultKind(pools, 1, 5),
        "pause-pool": FaultKind(pools, bound + 2, bound + 8),
        "restart-database": FaultKind(("postgresql",), 2, 6),
        "pause-beat-leader": FaultKind(("beat",), LEASE_S * 2, LEASE_S * 4),
        "memory-alarm": FaultKind(("broker",), 3, 8),
        "slow-provider": FaultKind(("provider",), 5, 15),
        "provider-errors": FaultKind(("provider",), 5, 15),
        "kill-broker-node": FaultKind(("node-0", "node-1", "node-2"), 5, 15, needs="cluster"),
        "cut-host": FaultKind(tuple(f"host-{n}" for n in range(1, hosts + 1)), bound + 2, bound + 10, needs="hosts"),
    }


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule: when it lands (seconds into the run), what it hits, how long it holds."""

    at_s: float
    kind: str
    target: str
    hold_s: float

    def __str__(self) -> str:
        return f"{self.at_s:7.1f}s  {self.kind:<18} {self.target:<12} hold {self.hold_s:.1f}s"


def plan(seed: int, minutes: float, kinds: dict[str, FaultKind]) -> list[Fault]:
    """The fault schedule of a seed: faults every 3 to 12 s, overlapping, the last one over QUIET_S before the end."""
    rng = random.Random(seed)
    names = sorted(kinds)
    faults, at, end = [], rng.uniform(5, 10), minutes * 60 - QUIET_S
    while at < end:
        name = rng.choice(names)
        kind = kinds[name]
        hold = round(rng.uniform(kind.shortest_s, kind.longest_s), 1)
        target = rng.choice(kind.targets)
        if at + hold <= end:
            faults.append(Fault(round(at, 1), name, target, hold))
        at += rng.uniform(3, 12)
    return faults


def usable(kinds: dict[str, FaultKind], cluster: bool, hosts: int) -> dict[str, FaultKind]:
    """The faults this run can do: the cluster's with --cluster, the hosts' with --hosts; the shared broker's
    memory alarm only on the machine's broker."""
    have = {"cluster"} if cluster else set()
    if hosts:
        have.add("hosts")
    chosen = {name: kind for name, kind in kinds.items() if not kind.needs or kind.needs in have}
    if cluster:
        chosen.pop("memory-alarm", None)
    return chosen


@dataclass
class RunRecord:
    """What the nemesis did: faults done or skipped (their target busy with another), and workload sends."""

    done: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    sends: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    dead_seen: set[str] = field(default_factory=set)
    settle_s: float = 0.0  # from the faults' end (pools restarted, beats stopped) to a quiet topology
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, counter: Counter, key: str) -> None:
        with self.lock:
            counter[key] += 1


class Nemesis:
    """Does each fault of the schedule at its time, on its own thread; one fault at a time on a target."""

    def __init__(self, topology: Topology, kinds: dict[str, FaultKind], record: RunRecord) -> None:
        self.topology, self.kinds, self.record = topology, kinds, record
        self.locks: dict[str, threading.Lock] = {}
        self.threads: list[threading.Thread] = []

    def run(self, schedule: list[Fault], started: float, stop: threading.Event) -> None:
        for fault in schedule:
            if stop.wait(max(0.0, started + fault.at_s - time.monotonic())):
                return
            thread = threading.Thread(target=self._do, args=(fault,), daemon=True, name=str(fault))
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)

    def _do(self, fault: Fault) -> None:
        lock = self.locks.setdefault(fault.target, threading.Lock())
        if not lock.acquire(blocking=False):
            self.record.count(self.record.skipped, fault.kind)
            return
        try:
            getattr(self.topology, "fault_" + fault.kind.replace("-", "_"))(fault.target, fault.hold_s)
            self.record.count(self.record.done, fault.kind)
        except Exception as error:
            print(f"nemesis: {fault} could not be done: {error!r}", file=sys.stderr)
            self.record.count(self.record.skipped, fault.kind)
        finally:
            lock.release()


class Topology:
    """The running parts the faults act on, and how each fault is done and undone."""

    def __init__(self, pools: Any, sim: Any, beats: list[subprocess.Popen], cluster: Any = None,
                 hosts: Any = None) -> None:
        self.pools, self.sim, self.beats, self.cluster, self.hosts = pools, sim, beats, cluster, hosts
        self.provider_normal = {"latency_ms": 50, "error_rate": 0, "rate_limit_rate": 0}

    def fault_kill_child(self, pool: str, hold_s: float) -> None:
        self.pools.kill_children(pool)

    def fault_kill_pool(self, pool: str, hold_s: float) -> None:
        self.pools.kill(pool)
        time.sleep(hold_s)  # the pool is down this long, as a crashed container before its restart
        self.pools.start(pool)

    def fault_pause_pool(self, pool: str, hold_s: float) -> None:
        group = self.pools.processes[pool].pid
        os.killpg(group, signal.SIGSTOP)
        try:
            time.sleep(hold_s)  # past the heartbeat bound: the broker gives what it held to others
        finally:
            os.killpg(group, signal.SIGCONT)

    def fault_restart_database(self, target: str, hold_s: float) -> None:
        from django.db import connections

        from tools.faults import postgresql

        connections.close_all()
        postgresql("stop")
        try:
            time.sleep(hold_s)
        finally:
            postgresql("start")

    def fault_pause_beat_leader(self, target: str, hold_s: float) -> None:
        from weather.models import BeatLease

        holder = BeatLease.objects.values_list("holder", flat=True).first() or ""
        beat = next((b for b in self.beats if holder.endswith(f":{b.pid}")), None)
        if beat is None:
            raise RuntimeError(f"no running beat holds the lease ({holder!r})")
        beat.send_signal(signal.SIGSTOP)
        try:
            time.sleep(hold_s)  # past the lease: the standby takes over
        finally:
            beat.send_signal(signal.SIGCONT)

    def fault_memory_alarm(self, target: str, hold_s: float) -> None:
        from tools.rabbit_alarm import memory_alarm

        with memory_alarm():
            time.sleep(hold_s)

    def fault_slow_provider(self, target: str, hold_s: float) -> None:
        self.sim.configure(latency_ms=2500)
        try:
            time.sleep(hold_s)
        finally:
            self.sim.configure(**self.provider_normal)

    def fault_provider_errors(self, target: str, hold_s: float) -> None:
        self.sim.configure(error_rate=0.3, rate_limit_rate=0.1, retry_after_s=0.5)
        try:
            time.sleep(hold_s)
        finally:
            self.sim.configure(**self.provider_normal)

    def fault_kill_broker_node(self, target: str, hold_s: float) -> None:
        node = self.cluster.nodes[int(target.removeprefix("node-"))]
        self.cluster.kill(node)
        try:
            time.sleep(hold_s)
        finally:
            self.cluster.start(node)

    def fault_cut_host(self, target: str, hold_s: float) -> None:
        host = int(target.removeprefix("host-"))
        self.hosts.cut(host)
        try:
            time.sleep(hold_s)
        finally:
            self.hosts.reconnect(host)


def every(interval_s: float, stop: threading.Event, action: Callable[[], None]) -> threading.Thread:
    """A thread doing `action` every `interval_s` until stopped; an action that fails is counted, not fatal."""

    def loop() -> None:
        from django.db import close_old_connections

        while not stop.wait(interval_s):
            # As a request or a task begins: a connection a database restart broke is replaced, not reused forever.
            close_old_connections()
            with contextlib.suppress(Exception):
                action()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def settle(record: RunRecord, answers: list, poison: set[str], bound_s: float) -> None:
    """Wait until the run has nothing left to do: lanes empty, every accepted request ended, every run finished."""
    from django.db import connections
    from django_celery_results.models import TaskResult

    from routing import LANE_NAMES
    from routing.broker import queue_states
    from tools.checker import FINAL_STATES, accepted_task_ids
    from tools.harness import wait_for
    from weather.models import RefreshBatch

    accepted = set(accepted_task_ids(answers))  # a deduplicated 202 shares the id of the one it joined

    def quiet() -> bool:
        try:
            states = queue_states()
            if any(states[lane].messages for lane in LANE_NAMES if lane in states):
                return False
            ended = TaskResult.objects.filter(task_id__in=accepted, status__in=FINAL_STATES).count()
            return ended == len(accepted) and not RefreshBatch.objects.filter(
                status=RefreshBatch.Status.PENDING).exists()
        except Exception:
            connections.close_all()
            return False

    with contextlib.suppress(AssertionError):
        wait_for(quiet, timeout=bound_s, interval=1, what="the run to settle")


def workload_share(cities: int, quota_per_minute: int) -> float:
    """The share of the provider's minute quota the workload asks for on average: refreshes and clicks."""
    refreshes = cities * (60 / PERIODIC_EVERY_S + 60 / REFRESH_EVERY_S)
    return (refreshes + 60 / CLICK_EVERY_S) / quota_per_minute


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--cities", type=int, default=100)
    parser.add_argument("--cluster", action="store_true", help="a three-node RabbitMQ cluster of the run's own")
    parser.add_argument("--hosts", type=int, default=0, help="bulk replicas on this many test hosts")
    parser.add_argument("--plan", action="store_true", help="print the seed's fault schedule and stop")
    args = parser.parse_args()
    if args.cluster and args.hosts:
        parser.error("--cluster and --hosts do not combine: the test hosts reach the machine's broker")
    from weather.provider import FREE_TIER_LOCATIONS_PER_MINUTE

    share = workload_share(args.cities, FREE_TIER_LOCATIONS_PER_MINUTE)
    if share > WORKLOAD_SHARE_MAX:
        parser.error(f"--cities {args.cities}: the workload would ask for {share:.0%} of the minute quota on "
                     f"average (at most {WORKLOAD_SHARE_MAX:.0%}); its backlog would grow with the run's length")
    kinds = usable(fault_kinds(args.hosts), args.cluster, args.hosts)
    schedule = plan(args.seed, args.minutes, kinds)
    print(f"nemesis: seed {args.seed}, {args.minutes} minutes, {len(schedule)} faults:")
    for fault in schedule:
        print(f"  {fault}")
    if args.plan:
        return 0
    # Stopped from outside (a CI timeout, Ctrl-C): unwind, so every fault is undone and every process stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with contextlib.ExitStack() as stack:
        cluster = None
        if args.cluster:
            from tools.rabbit_cluster import rabbit_cluster

            cluster = stack.enter_context(rabbit_cluster(3))
        return run(args, schedule, kinds, cluster, stack)


def run(args: argparse.Namespace, schedule: list[Fault], kinds: dict[str, FaultKind], cluster: Any,
        stack: contextlib.ExitStack) -> int:
    """Set the topology up, run the workload under the schedule, settle, check; 0 when no rule was broken."""
    from weather import provider

    os.environ.update({
        # The free tier's minute, the binding limit here (the workload's bursts overrun it);
        # hour and day limits a long run stays inside, so that what it defers returns within the run.
        "WEATHER_QUOTA_PER_MINUTE": str(provider.FREE_TIER_LOCATIONS_PER_MINUTE),
        "WEATHER_QUOTA_PER_HOUR": str(provider.FREE_TIER_LOCATIONS_PER_MINUTE * 60),
        "WEATHER_QUOTA_PER_DAY": "0",
        "WEATHER_BATCH_SIZE": "20", "WEATHER_RETRY_BASE_SECONDS": "0.2", "WEATHER_READ_TIMEOUT": "1.5",
        "BROKER_HEARTBEAT_S": str(HEARTBEAT_S), "BEAT_LEASE_SECONDS": str(LEASE_S),
        "REFRESH_RATE_LIMIT_PER_MINUTE": "100000", "SECURE_HTTPS": "false", "EFFECTS_LEDGER": "true",
        "PYTHONUNBUFFERED": "1",
        # Its processes' metric files apart from any test run's that started it.
        "PROMETHEUS_MULTIPROC_DIR": stack.enter_context(tempfile.TemporaryDirectory(prefix="f_brain-nemesis-")),
    })
    from tools.measure import ROOT, fresh_cities, prepare

    prepare("nemesis", broker_url=cluster.broker_url if cluster else None)
    from django.core.management import call_command
    from django.db import connection
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from tools.harness import Simulator, WorkerPools, purge_lanes
    from tools.simulator import start_in_thread
    from tools.web_tier import web_tier
    from tools.workload import Poster
    from weather.apikeys import issue_key
    from weather.ops.deadletters import list_dead_letters, replay
    from weather.tasks import cleanup_old_weather_data, fetch_weather_for_city, update_all_weather_data

    call_command("collectstatic", "--noinput", verbosity=0)
    purge_lanes()
    fresh_cities(args.cities, "Nemesis")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE weather_pendingfetch, weather_dailysummary, weather_dailysummaryrun, "
                       "weather_beatlease, weather_beatheartbeat, weather_apikey RESTART IDENTITY CASCADE")
    PeriodicTask.objects.filter(name="nemesis refresh").delete()
    server = start_in_thread()
    stack.callback(server.shutdown)
    sim = Simulator(server.url)
    sim.reset()
    env = {key: value for key, value in os.environ.items() if not key.startswith("WORKER_")}
    env["WEATHER_API_URL"] = server.url
    logs = ROOT / "bench" / "results" / "nemesis-logs"
    pools = WorkerPools(env, logs, consumers=cluster.consumers if cluster else None)
    stack.callback(pools.stop_all)
    for pool in ("interactive", "bulk", "maintenance"):
        pools.start(pool)
    hosts = None
    if args.hosts:
        from tools.testhosts import netns_hosts

        hosts = stack.enter_context(netns_hosts(args.hosts, env, logs / "hosts"))
        for host in range(1, args.hosts + 1):
            hosts.start(host, "bulk")
    every_run, _ = IntervalSchedule.objects.get_or_create(every=PERIODIC_EVERY_S, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="nemesis refresh", task="weather.tasks.update_all_weather_data",
                                interval=every_run, expire_seconds=PERIODIC_EVERY_S - 1)
    beats = [start_beat(env, logs / f"beat-{n}.log") for n in (1, 2)]
    stack.callback(stop_beats, beats)
    topology = Topology(pools, sim, beats, cluster, hosts)
    sim.configure(**topology.provider_normal)
    _, key = issue_key("nemesis", rate_limit_per_minute=100000)
    poison = {fetch_weather_for_city.apply_async(args=[10**9 + n]).id for n in range(POISON)}
    record = RunRecord()
    # A generator of its own for each workload thread: which cities and days it asks for follows from the seed.
    city_ids = list(range(1, args.cities + 1))
    click_rng, day_rng = random.Random(args.seed), random.Random(args.seed + 1)

    with web_tier(env) as tier:
        stop = threading.Event()
        clicks = Poster((f"{tier.edge}/api/cities/{click_rng.choice(city_ids)}/refresh" for _ in itertools.count()),
                        headers={"X-API-Key": key}, every_s=CLICK_EVERY_S)
        days = Poster((f"{tier.edge}/api/etl/daily-summary?day={day}" for day in summary_days(day_rng)),
                      headers={"X-API-Key": key}, every_s=SUMMARY_EVERY_S)
        posters = [clicks, days]

        def send(name: str, task: Any) -> Callable[[], None]:
            def go() -> None:
                try:
                    task.apply_async()
                    record.count(record.sends, name)
                except Exception:
                    record.count(record.refused, name)
                    raise
            return go

        def replay_dead() -> None:
            record.dead_seen.update(letter.task_id for letter in replay())
            record.count(record.sends, "replay")

        loops = [every(REFRESH_EVERY_S, stop, send("refresh", update_all_weather_data)),
                 every(CLEANUP_EVERY_S, stop, send("cleanup", cleanup_old_weather_data)),
                 every(REPLAY_EVERY_S, stop, replay_dead)]
        for poster in posters:
            poster.start()
        nemesis = Nemesis(topology, kinds, record)
        started = time.monotonic()
        try:
            nemesis.run(schedule, started, stop)
            stop.wait(max(0.0, started + args.minutes * 60 - time.monotonic()))
        finally:
            stop.set()
            answers = [answer for poster in posters for answer in poster.finish()]
            for loop in loops:
                loop.join(timeout=60)
            nemesis.join()
        for pool in ("interactive", "bulk", "maintenance"):
            if not pools.alive(pool):
                pools.start(pool)
        stop_beats(beats)
        settled = time.monotonic()
        settle(record, answers, poison, SETTLE_S)
        record.settle_s = time.monotonic() - settled
        shutil.copy(tier.web_log, logs / "web.log")  # the tier's folder goes with it
    return report(args, answers, poison, record, list_dead_letters)


def summary_days(rng: random.Random) -> Iterator[str]:
    """Days to summarise, within the readings kept: today and the six before it."""
    from django.utils import timezone

    while True:
        yield (timezone.now().date() - timedelta(days=rng.randrange(0, 7))).isoformat()


def start_beat(env: dict[str, str], log: Path) -> subprocess.Popen:
    """A beat through the launcher, as the Procfile starts it."""
    from tools.measure import ROOT

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers", "beat"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def stop_beats(beats: list[subprocess.Popen]) -> None:
    """Every beat gone, paused ones included."""
    for beat in beats:
        with contextlib.suppress(ProcessLookupError):
            beat.send_signal(signal.SIGCONT)
            beat.send_signal(signal.SIGKILL)
        beat.wait(timeout=10)


def report(args: argparse.Namespace, answers: list, poison: set[str], record: RunRecord,
           list_dead_letters: Callable[[], list]) -> int:
    """Read the history, check it, print the table; 0 when every rule held."""
    from django.db import connections

    from tools.checker import check, read_history
    from tools.measure import print_table
    from weather import effects

    connections.close_all()
    dead = record.dead_seen | {letter.task_id for letter in list_dead_letters()}
    history = read_history(answers, poison, dead)
    violations = check(history)
    statuses = Counter(answer.status for answer in answers)
    states = Counter(history.states.values())
    from weather.provider import FREE_TIER_LOCATIONS_PER_MINUTE

    share = workload_share(args.cities, FREE_TIER_LOCATIONS_PER_MINUTE)
    rows: list[list[object]] = [["seed", args.seed], ["minutes", args.minutes],
                                ["workload share of quota", f"{share:.0%}"]]
    rows += [[f"fault {kind}", f"{record.done[kind]} done, {record.skipped[kind]} skipped"]
             for kind in sorted(set(record.done) | set(record.skipped))]
    rows += [[f"answers {status}", count] for status, count in sorted(statuses.items())]
    rows += [[f"accepted ended {state}", count] for state, count in sorted(states.items())]
    rows += [[f"sent {name}", f"{record.sends[name]} ({record.refused[name]} refused)"]
             for name in sorted(set(record.sends) | set(record.refused))]
    rows += [[f"ledger {t.kind}", f"{t.units} units, {t.applied} applied, {t.discarded} discarded, "
              f"{t.applied_twice} applied twice"] for t in effects.tally()]
    rows += [["settled after", f"{record.settle_s:.0f} s (bound {SETTLE_S:.0f} s)"],
             ["dead letters", f"{len(dead)} ({len(poison)} poison sent)"], ["violations", len(violations)]]
    print_table(["measure", "value"], rows)
    for violation in violations:
        print(f"VIOLATION {violation.rule}: {violation.detail}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
