"""Renders the `celery worker` and `celery beat` command lines from the pool registry."""

from __future__ import annotations

from .pools import POOL_NAME_ENV, Pool

CELERY_APP = "server_config"


def _celery(quiet: bool) -> list[str]:
    # --quiet drops the start-up banner, the one thing Celery prints outside logging:
    # with LOG_FORMAT=json every line a process writes must be a JSON object.
    return ["celery", "--quiet", "-A", CELERY_APP] if quiet else ["celery", "-A", CELERY_APP]


def worker_argv(pool: Pool, loglevel: str = "INFO", quiet: bool = False) -> list[str]:
    """The full `celery worker` argument list for one pool."""
    return [
        *_celery(quiet), "worker",
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
        # Event heartbeats are publishes from the consumer's own loop: under a RabbitMQ
        # memory alarm one would freeze that loop (a worker starting then never
        # consumes, and cannot help drain the queues that raised the alarm).
        # Liveness is asked by ping instead (doctor, the compose healthcheck).
        "--without-heartbeat",
        "--loglevel", loglevel,
    ]


def worker_environment(pool: Pool) -> dict[str, str]:
    """Variables the worker process needs on top of the caller's environment."""
    return {
        POOL_NAME_ENV: pool.name,
    }


def beat_argv(loglevel: str = "INFO", quiet: bool = False) -> list[str]:
    """The `celery beat` argument list; any number may run, the lease in weather/beat.py picks the one that sends."""
    return [*_celery(quiet), "beat", "--loglevel", loglevel]
