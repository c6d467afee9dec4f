"""The Procfile (honcho locally, a Procfile-based PaaS): the release step, web, one process type per pool, beat."""

from __future__ import annotations

from pathlib import Path

from ..pools import Pool
from .files import ROOT

PROCFILE = ROOT / "Procfile"
# What runs beside the pools, in the order a reader expects: the release step first.
RELEASE = "python manage.py migrate --noinput"
WEB = "python -m server_config.serve"
BEAT = "python -m workers beat"


def pool_command(pool: Pool) -> str:
    """How every platform starts the pool: the launcher, which renders the celery command line."""
    return f"python -m workers run {pool.name}"


def render(pools: dict[str, Pool]) -> dict[Path, str]:
    """The Procfile's text (no comments: not every platform's parser allows them)."""
    pool_entries = {name: pool_command(pool) for name, pool in pools.items()}
    entries = {"release": RELEASE, "web": WEB, **pool_entries, "beat": BEAT}
    return {PROCFILE: "".join(f"{name}: {command}\n" for name, command in entries.items())}
