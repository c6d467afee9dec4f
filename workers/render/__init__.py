"""Everything that deploys or watches the pools, rendered from the registry: `python -m workers render <target>`.

One place for every renderer, so a new lane or a changed default reaches each file by
one command, and `--check` (the drift tests) names any file that was edited instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..pools import Pool
from . import compose, envfile, k8s, monitoring, procfile, readme
from .files import write_or_check

Renderer = Callable[[dict[str, Pool]], dict[Path, str]]

TARGETS: dict[str, Renderer] = {
    "procfile": procfile.render,
    "compose": compose.render,
    "env": envfile.render,
    "readme": readme.render,
    "k8s": k8s.files,
    "monitoring": monitoring.render,
}
ALL = "all"


def rendered(target: str, pools: dict[str, Pool]) -> dict[Path, str]:
    """Every file of one target (or of all of them) and its text."""
    names = list(TARGETS) if target == ALL else [target]
    return {path: text for name in names for path, text in TARGETS[name](pools).items()}


def render(target: str, pools: dict[str, Pool], check: bool = False, out: Path | None = None) -> int:
    """Write a target's files, or with `check` exit 1 naming each that differs; `out` moves the k8s folder."""
    files = k8s.files(pools, out) if target == "k8s" and out else rendered(target, pools)
    return write_or_check(files, f"python -m workers render {target}", check)
