"""The pool lines of .env.example: each pool's tunable settings as `WORKER_<POOL>_<SETTING>`, at their defaults."""

from __future__ import annotations

from pathlib import Path

from ..pools import ENV_PREFIX, Pool
from .files import ROOT, replace_block

ENV_EXAMPLE = ROOT / ".env.example"
BLOCK = "env:pools"
# The settings an operator tunes per deployment (`python -m workers list` shows every field).
TUNABLE = ("concurrency", "prefetch_multiplier", "soft_time_limit", "time_limit", "max_tasks_per_child",
           "max_memory_per_child_kb", "min_replicas", "max_replicas")


def override_variable(pool: Pool, setting: str) -> str:
    """The variable that overrides one setting of one pool."""
    return f"{ENV_PREFIX}{pool.name}_{setting}".upper()


def render(pools: dict[str, Pool]) -> dict[Path, str]:
    """.env.example with its pool block rendered."""
    body = "".join(f"# {override_variable(pool, setting)}={getattr(pool, setting)}\n"
                   for pool in pools.values() for setting in TUNABLE)
    return {ENV_EXAMPLE: replace_block(ENV_EXAMPLE, ENV_EXAMPLE.read_text(), BLOCK, body)}
