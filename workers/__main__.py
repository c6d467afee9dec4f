"""`python -m workers run <pool> | beat | list | alive | render | broker-generation`: every platform's launcher."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from envvars import env_str
from routing import DEFAULT_GENERATION
from routing.broker import BrokerUnavailableError, detect_generation

from .command import beat_argv, worker_argv, worker_environment
from .liveness import alive
from .pools import PoolConfigError, load_pools
from .render import ALL, TARGETS, render
from .render.files import RenderError


def _exec(argv: list[str], extra_env: dict[str, str], dry_run: bool, nice: int = 0) -> int:
    if dry_run:
        prefix = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(extra_env.items()))
        niced = ["nice", "-n", str(nice), *argv] if nice else argv
        print(f"{prefix} {shlex.join(niced)}".strip())
        return 0
    if nice:
        os.nice(nice)  # inherited through exec by the worker and every child it forks
    env = {**os.environ, **extra_env}
    sys.stdout.flush()
    # exec, so the platform's signals reach Celery directly (no shell in between);
    # through this interpreter, so the venv's Celery runs whatever PATH says.
    os.execve(sys.executable, [sys.executable, "-m", *argv], env)
    return 1  # pragma: no cover - exec does not return


def _print_table(pools: dict) -> None:
    columns = ("name", "queues", "implementation", "concurrency", "prefetch_multiplier",
               "acks_late", "soft_time_limit", "time_limit", "max_tasks_per_child",
               "max_memory_per_child_kb", "cpu_nice", "min_replicas", "max_replicas")
    headers = ("pool", "queues", "impl", "conc", "prefetch", "acks_late", "soft_s", "hard_s",
               "max_tasks", "max_mem_kb", "nice", "min_rep", "max_rep")
    rows = [[",".join(v) if isinstance(v, tuple) else str(v)
             for v in (getattr(pool, c) for c in columns)] for pool in pools.values()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _print_broker_generation() -> int:
    try:
        generation = detect_generation()
    except (BrokerUnavailableError, ValueError) as error:
        print(f"workers: {error}", file=sys.stderr)
        return 1
    # Not RabbitMQ (the local filesystem fallback): no queue types to choose, the default serves.
    print(int(generation or DEFAULT_GENERATION))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run, list or print a pool's command."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="exec the celery worker of one pool")
    run.add_argument("pool")
    run.add_argument("--dry-run", action="store_true", help="print the command instead")
    run.add_argument("--loglevel", default=os.environ.get("CELERY_LOGLEVEL", "INFO"))
    beat = sub.add_parser("beat", help="exec the one celery beat")
    beat.add_argument("--dry-run", action="store_true")
    beat.add_argument("--loglevel", default=os.environ.get("CELERY_LOGLEVEL", "INFO"))
    sub.add_parser("list", help="show the pools as a table")
    alive_parser = sub.add_parser("alive", help="exit 0 while the pool's worker in this container is alive")
    alive_parser.add_argument("pool")
    sub.add_parser("broker-generation", help="print the configured broker's RabbitMQ generation (3 or 4), for "
                                            "RABBITMQ_GENERATION")
    render_parser = sub.add_parser("render", help="write what deploys and watches the pools from the registry: the "
                                                  "Procfile, compose's worker services, .env.example's pool lines, "
                                                  "the README's lane table, deploy/k8s/, alert rules and dashboard")
    render_parser.add_argument("target", choices=[ALL, *TARGETS])
    render_parser.add_argument("--out", default=None, help="k8s: folder to write to (default deploy/k8s/), with "
                                                           "this environment's WORKER_* overrides applied")
    render_parser.add_argument("--check", action="store_true", help="exit 1 naming any file that differs instead")
    args = parser.parse_args(argv)

    if args.command == "broker-generation":
        return _print_broker_generation()
    try:
        pools = load_pools()
    except PoolConfigError as error:
        print(f"workers: {error}", file=sys.stderr)
        return 2
    if args.command == "list":
        _print_table(pools)
        return 0
    if args.command == "alive":
        return 0 if alive(args.pool) else 1
    if args.command == "render":
        # The committed files show the registry's defaults, whatever WORKER_* this shell sets; manifests
        # written elsewhere (--out, a cluster of one's own) take the overrides.
        rendered_pools = pools if args.out else load_pools({})
        try:
            return render(args.target, rendered_pools, check=args.check, out=Path(args.out) if args.out else None)
        except RenderError as error:
            print(f"workers: {error}", file=sys.stderr)
            return 2
    quiet = env_str("LOG_FORMAT", "text") == "json"
    if args.command == "beat":
        return _exec(beat_argv(args.loglevel, quiet), {}, args.dry_run)
    if args.pool not in pools:
        print(f"workers: unknown pool {args.pool!r}; known: {', '.join(pools)}", file=sys.stderr)
        return 2
    pool = pools[args.pool]
    return _exec(worker_argv(pool, args.loglevel, quiet), worker_environment(pool), args.dry_run, pool.cpu_nice)


if __name__ == "__main__":
    sys.exit(main())
