"""The typed registry of worker pools: one per lane, each tuned for its kind of work."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from django.core.exceptions import ImproperlyConfigured

from envvars import parse_bool, parse_int
from routing import BULK, INTERACTIVE, LANE_NAMES, LANES, MAINTENANCE

# A worker serves what it has prefetched in arrival order, whatever the priorities:
# on a priority lane only prefetch 1 lets RabbitMQ's ordering decide what runs next.
PRIORITISED_LANES = frozenset(lane.name for lane in LANES if lane.prioritised)

# RabbitMQ closes a channel whose delivery stays unacknowledged longer than this
# (its default `consumer_timeout`, 30 min). With acks late, a task's hard limit and
# the wait of prefetched messages behind it must stay below it.
RABBITMQ_CONSUMER_TIMEOUT_S = 1800

# Pool implementations that can enforce soft and hard time limits (signals + a
# supervising parent); threads cannot interrupt a stuck request.
POOL_IMPLEMENTATIONS = ("prefork", "solo")

# A run that takes this share of its pool's soft limit is close to being cut short:
# workers count such runs, doctor reports them.
NEAR_LIMIT_SHARE = 0.8

ENV_PREFIX = "WORKER_"
POOL_NAME_ENV = "POOL_NAME"


class PoolConfigError(ValueError):
    """A pool declaration or override that cannot run."""


@dataclass(frozen=True)
class Pool:
    """One worker pool: what it consumes and how it is tuned."""

    name: str
    concurrency: int
    prefetch_multiplier: int
    soft_time_limit: int
    time_limit: int
    max_tasks_per_child: int
    max_memory_per_child_kb: int
    # Shared by every pool unless it says otherwise: prefork, which enforces time
    # limits; acks late with reject-on-worker-lost, since every task is an idempotent
    # upsert, so a worker killed mid-task loses nothing; 20 s to drain on SIGTERM.
    implementation: str = "prefork"
    acks_late: bool = True
    reject_on_worker_lost: bool = True
    # Seconds a stopped worker's running tasks may take to finish (SIGTERM is Celery's warm
    # shutdown: no new work, running tasks end and are acked). The platform's stop grace is
    # set above it (compose, Kubernetes) and kills what is still running then: unacked,
    # that goes back to the queue.
    drain_seconds: int = 20
    # Niceness (0-19) the launcher adds before exec: background lanes give way to a
    # person's fetch when they share a host's CPUs (scripts/run, compose on one machine).
    cpu_nice: int = 0
    # Replicas an orchestrator may run (KEDA on Kubernetes): scaled on the lane's backlog
    # between these; 0 lets an idle lane cost nothing.
    min_replicas: int = 0
    max_replicas: int = 4
    # Queue wait (p95, seconds) the lane's work tolerates before it starts: beyond it the lane
    # is late (doctor warns, the FBrainLaneWaitOverBudget alert fires). A person's click
    # waits seconds; a refresh batch or the cleanup may wait behind a burst for minutes.
    wait_budget_s: int = 300
    # A pool is named after the lane it serves and consumes that lane's queue,
    # unless it is declared with queues of its own.
    queues: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.queues:
            object.__setattr__(self, "queues", (self.name,))

    @property
    def stop_grace_s(self) -> int:
        """Seconds the platform waits after SIGTERM before it kills: the drain, and ten more for the process to exit."""
        return self.drain_seconds + 10

    @property
    def replica_capacity(self) -> int:
        """Messages one replica takes off its queue at once: a slot's running task and its prefetch."""
        return self.concurrency * self.prefetch_multiplier

    def desired_replicas(self, backlog: int) -> int:
        """Replicas a backlog of ready messages calls for: KEDA's formula for this pool's ScaledObject.

        The ScaledObject's target is `replica_capacity` messages a replica (an
        AverageValue metric), so the autoscaler asks for ceil(backlog / capacity),
        kept within min_replicas and max_replicas.
        """
        return max(self.min_replicas, min(self.max_replicas, math.ceil(max(0, backlog) / self.replica_capacity)))

    def validate(self) -> None:
        """Reject values that cannot work together, naming the pool and the value."""
        problems = []
        if self.implementation not in POOL_IMPLEMENTATIONS:
            problems.append(f"implementation must be one of {POOL_IMPLEMENTATIONS}")
        for name in ("concurrency", "prefetch_multiplier", "soft_time_limit", "time_limit",
                     "max_tasks_per_child", "max_memory_per_child_kb", "wait_budget_s"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.min_replicas < 0 or self.max_replicas < max(1, self.min_replicas):
            problems.append("replicas must satisfy 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if PRIORITISED_LANES & set(self.queues) and self.min_replicas < 1:
            problems.append("min_replicas must be at least 1 on a priority lane: a person's click cannot wait "
                            "for a replica to start")
        if self.drain_seconds < 0:
            problems.append("drain_seconds cannot be negative")
        if not 0 <= self.cpu_nice <= 19:
            problems.append("cpu_nice must be between 0 and 19 (raising priority needs root)")
        if self.soft_time_limit >= self.time_limit:
            problems.append("soft_time_limit must be below time_limit so the task can clean up")
        if self.reject_on_worker_lost and not self.acks_late:
            problems.append("reject_on_worker_lost needs acks_late")
        # Worst case for the last prefetched (so still unacknowledged) message: it
        # waits for every task ahead of it in this process to run to its hard limit.
        worst_wait = self.time_limit * self.prefetch_multiplier
        if worst_wait >= RABBITMQ_CONSUMER_TIMEOUT_S:
            problems.append(
                f"time_limit x prefetch_multiplier = {worst_wait}s reaches RabbitMQ's "
                f"consumer_timeout ({RABBITMQ_CONSUMER_TIMEOUT_S}s): unacked messages would be "
                "redelivered while still queued in the worker"
            )
        if PRIORITISED_LANES & set(self.queues) and self.prefetch_multiplier != 1:
            problems.append("prefetch_multiplier must be 1 on a priority lane: prefetched messages run "
                            "in arrival order, not by priority")
        unknown = set(self.queues) - set(LANE_NAMES)
        if unknown:
            problems.append(f"consumes undeclared queues {sorted(unknown)}")
        if problems:
            raise PoolConfigError(f"pool {self.name!r}: " + "; ".join(problems))


# Why these defaults (2-core machine, I/O-bound provider calls):
# - interactive: many slots because each fetch mostly waits on the provider;
#   prefetch 1 so a queued click is never stuck behind a busy slot and RabbitMQ's
#   priority order decides what runs next; 10 s/15 s because a person is waiting.
# - bulk: few slots, one provider request of up to hundreds of locations each;
#   prefetch 4 hides broker round-trips between batches (4 x 300 s stays below the
#   consumer timeout); minutes of limit for a slow provider and the bulk upsert.
# - maintenance: one slot, since cleanup is serial by design; limits below the
#   30 min consumer timeout; the task stops itself at the soft limit and resumes.
# Recycling (max tasks / max memory per child) bounds leaks from long-lived children.
# bulk and maintenance run at nice 10: where they share CPUs with the interactive
# pool, the kernel serves a person's fetch first (their upserts and deletes are
# CPU-heavy on a small host); on hosts of their own it changes nothing.
# On SIGTERM running tasks get drain_seconds to finish before the platform kills the
# worker (Heroku-style platforms wait 30 s); acks-late work that does not finish is requeued.
DEFAULT_POOLS: tuple[Pool, ...] = (
    Pool(
        name=INTERACTIVE.name,
        concurrency=6,
        prefetch_multiplier=1,
        soft_time_limit=10,
        time_limit=15,
        max_tasks_per_child=1000,
        max_memory_per_child_kb=250_000,
        # Never zero: a click must find a replica running.
        min_replicas=1,
        max_replicas=6,
        wait_budget_s=5,
    ),
    Pool(
        name=BULK.name,
        concurrency=2,
        prefetch_multiplier=4,
        soft_time_limit=240,
        time_limit=300,
        max_tasks_per_child=200,
        max_memory_per_child_kb=400_000,
        cpu_nice=10,
        max_replicas=6,
    ),
    Pool(
        name=MAINTENANCE.name,
        concurrency=1,
        prefetch_multiplier=1,
        soft_time_limit=1500,
        time_limit=1680,
        max_tasks_per_child=50,
        max_memory_per_child_kb=300_000,
        cpu_nice=10,
        # Cleanup is serial by design: one replica at most.
        max_replicas=1,
    ),
)

_FIELD_TYPES = {f.name: f.type for f in fields(Pool) if f.name not in ("name", "queues")}


def _parse(variable: str, key: str, raw: str) -> object:
    kind = _FIELD_TYPES[key]
    try:
        if kind == "bool":
            return parse_bool(variable, raw)
        if kind == "int":
            return parse_int(variable, raw)
    except ImproperlyConfigured as error:
        raise PoolConfigError(str(error)) from None
    return raw.strip()


def load_pools(environ: Mapping[str, str] | None = None) -> dict[str, Pool]:
    """The registry with `WORKER_<POOL>_<FIELD>` overrides applied, validated as a whole."""
    environ = os.environ if environ is None else environ
    pools = {pool.name: pool for pool in DEFAULT_POOLS}
    overrides: dict[str, dict[str, object]] = {name: {} for name in pools}
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        rest = variable[len(ENV_PREFIX):].lower()
        pool_name = next((name for name in pools if rest.startswith(name + "_")), None)
        if pool_name is None:
            raise PoolConfigError(
                f"{variable}: unknown pool; variables are WORKER_<POOL>_<SETTING> with POOL in "
                f"{sorted(pools)}"
            )
        key = rest[len(pool_name) + 1:]
        if key not in _FIELD_TYPES:
            raise PoolConfigError(
                f"{variable}: unknown setting {key!r}; known: {sorted(_FIELD_TYPES)}"
            )
        overrides[pool_name][key] = _parse(variable, key, raw)
    resolved = {name: dataclasses.replace(pool, **overrides[name]) for name, pool in pools.items()}
    validate_registry(resolved.values())
    return resolved


def validate_registry(pools: Iterable[Pool]) -> None:
    """Every pool valid, and every lane consumed by exactly one pool."""
    pools = list(pools)
    for pool in pools:
        pool.validate()
    for lane in LANE_NAMES:
        consumers = [pool.name for pool in pools if lane in pool.queues]
        if len(consumers) != 1:
            raise PoolConfigError(f"lane {lane!r} must be consumed by exactly one pool, not {consumers}")


def current_pool(environ: Mapping[str, str] | None = None) -> Pool | None:
    """The pool this process runs as (set by the launcher), or None outside a worker."""
    environ = os.environ if environ is None else environ
    name = environ.get(POOL_NAME_ENV)
    if not name:
        return None
    pools = load_pools(environ)
    if name not in pools:
        raise PoolConfigError(f"{POOL_NAME_ENV}={name!r} is not a pool; known: {sorted(pools)}")
    return pools[name]
