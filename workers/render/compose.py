"""docker-compose.yml's worker services, one per pool, so each scales on its own (`--scale worker-<pool>=N`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..pools import Pool
from .files import ROOT, replace_block
from .procfile import pool_command

COMPOSE = ROOT / "docker-compose.yml"
BLOCK = "compose:workers"


def service_name(pool: Pool) -> str:
    """The pool's compose service."""
    return f"worker-{pool.name}"


def pool_service(pool: Pool) -> str:
    """One worker service, merged over the file's hand-written `x-worker` anchor."""
    return (
        f"  {service_name(pool)}:\n"
        "    <<: *worker\n"
        f"    # SIGTERM gives running tasks drain_seconds ({pool.drain_seconds} s); Docker kills after this.\n"
        f"    stop_grace_period: {pool.stop_grace_s}s\n"
        "    environment:\n"
        "      <<: *app-env\n"
        f"      POOL_NAME: {pool.name}\n"
        f"    command: {json.dumps(pool_command(pool).split())}\n"
    )


def render(pools: dict[str, Pool]) -> dict[Path, str]:
    """docker-compose.yml with its worker services block rendered (the rest of the file is hand-written)."""
    body = "\n".join(pool_service(pool) for pool in pools.values())
    return {COMPOSE: replace_block(COMPOSE, COMPOSE.read_text(), BLOCK, body)}
