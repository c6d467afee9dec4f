"""The README's figures that come from the registry: the lane table and the pools' connection count."""

from __future__ import annotations

from pathlib import Path

from routing import LANES, TASK_LANES, BrokerGeneration
from routing.generations import queue_type

from ..pools import Pool
from .files import ROOT, replace_block

README = ROOT / "README.md"
LANE_TABLE, CONNECTIONS = "readme:lanes", "readme:connections"
HTML_COMMENT = ("<!--", " -->")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def pool_summary(pool: Pool) -> str:
    """The pool's defaults in a line of prose."""
    parts = [
        _plural(pool.concurrency, "slot"),
        f"prefetch {pool.prefetch_multiplier}",
        f"{pool.soft_time_limit} s / {pool.time_limit} s limits",
        f"recycled after {pool.max_tasks_per_child} tasks or {pool.max_memory_per_child_kb // 1000} MB",
        f"{pool.min_replicas}..{pool.max_replicas} replicas",
        f"waits up to {pool.wait_budget_s} s",
    ]
    if pool.cpu_nice:
        parts.append(f"nice {pool.cpu_nice}")
    return ", ".join(parts)


def lane_table(pools: dict[str, Pool]) -> str:
    """Markdown: each lane, what runs there, its tasks and the pool that consumes it."""
    generations = list(BrokerGeneration)
    queue_header = " / ".join(f"RabbitMQ {int(generation)}" for generation in generations)
    rows = [f"| lane | what runs there | tasks | queue ({queue_header}) | pool (defaults; `python -m workers list`) |",
            "|---|---|---|---|---|"]
    for lane in LANES:
        pool = next(pool for pool in pools.values() if lane.name in pool.queues)
        tasks = ", ".join(f"`{name.rsplit('.', 1)[1]}`" for name, routed in TASK_LANES.items()
                          if routed == lane.name and not name.startswith("celery."))
        purpose = lane.purpose + ("; priorities" if lane.prioritised else "")
        queues = " / ".join(str(queue_type(lane, generation)) for generation in generations)
        rows.append(f"| `{lane.name}` | {purpose} | {tasks} | {queues} | `{pool.name}`: {pool_summary(pool)} |")
    return "\n".join(rows) + "\n"


def connections(pools: dict[str, Pool]) -> str:
    """The pools' children, each holding a database connection, at the registry's defaults."""
    counts = " + ".join(str(pool.concurrency) for pool in pools.values())
    return (f"Worker children at the registry's defaults, one database connection each: {counts} = "
            f"{sum(pool.concurrency for pool in pools.values())} ({', '.join(pools)}).\n")


def render(pools: dict[str, Pool]) -> dict[Path, str]:
    """README.md with its rendered blocks filled in."""
    text = replace_block(README, README.read_text(), LANE_TABLE, lane_table(pools), *HTML_COMMENT)
    return {README: replace_block(README, text, CONNECTIONS, connections(pools), *HTML_COMMENT)}
