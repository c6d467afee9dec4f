"""Renders the `celery worker` and `celery beat` command lines from the pool registry."""

from __future__ import annotations

from .pools import POOL_NAME_ENV, Pool

CELERY_APP = "server_config"


def worker_argv(pool: Pool, loglevel: str = "INFO") -> list[str]:
    """The full `celery worker` argument list for one pool."""
    return [
        "celery", "-A", CELERY_APP, "worker",
        "--hostname", f"{pool.name}@%h",
        "--queues", ",".join(pool.queues),
        "--pool", pool.implementation,
        "--concurrency", str(pool.concurrency),
        "--prefetch-multiplier", str(pool.prefetch_multiplier),
        # fair: hand a task to a child only when it is free, so one slow task
        # does not hold messages that an idle sibling could run now.
        "-O", "fair",
        "--soft-time-limit", str(pool.soft_time_limit),
        "--time-limit", str(pool.time_limit),
        "--max-tasks-per-child", str(pool.max_tasks_per_child),
        "--max-memory-per-child", str(pool.max_memory_per_child_kb),
        # Scaled replicas do not need to sync state with each other at start-up;
        # gossip and mingle only add broker chatter that grows with replicas.
        "--without-gossip", "--without-mingle",
        "--loglevel", loglevel,
    ]


def worker_environment(pool: Pool) -> dict[str, str]:
    """Variables the worker process needs on top of the caller's environment."""
    return {
        POOL_NAME_ENV: pool.name,
        # SIGTERM (PaaS shutdown, `docker stop`, honcho) starts Celery's soft
        # shutdown: running tasks get `soft_shutdown_timeout` to finish, then the
        # rest are cancelled and, being acks-late, go back to the queue unacked.
        "REMAP_SIGTERM": "SIGQUIT",
    }


def beat_argv(loglevel: str = "INFO") -> list[str]:
    """The `celery beat` argument list; one instance per deployment, scheduler from settings."""
    return ["celery", "-A", CELERY_APP, "beat", "--loglevel", loglevel]
