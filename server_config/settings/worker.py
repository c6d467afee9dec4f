"""The process's role: a worker of one pool (POOL_NAME, set by the launcher) or anything else (web, beat, commands).

Imported last by the settings package: what it sets here wins over messaging.py.
"""

from __future__ import annotations

from routing import broker as routing_broker
from workers.pools import current_pool

from .messaging import _TOPOLOGY, BROKER_HEARTBEAT_S, CELERY_BROKER_TRANSPORT_OPTIONS, CELERY_BROKER_URL

_POOL = current_pool()

# Only a worker's consumer loop sends heartbeats (messaging.py says why).
CELERY_BROKER_HEARTBEAT = BROKER_HEARTBEAT_S if _POOL else 0

if _POOL is None and not CELERY_BROKER_URL.startswith("filesystem://"):
    # A web request, beat or a command waits this long at most for any one reply. On a
    # cluster that lost its majority, closing a channel whose publish went unconfirmed
    # waited ~65 s for the broker (measured), far past any client; with this bound the
    # API answers 503 in about a second plus this. A pool's consumer reads from its event
    # loop and is watched by heartbeats instead.
    CELERY_BROKER_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS | {
        "read_timeout": routing_broker.CONNECT_TIMEOUT_S, "write_timeout": routing_broker.CONNECT_TIMEOUT_S}

# Worker behaviour: derived from the pool this process runs as (see workers/pools.py).
if _POOL is not None:
    # A pool knows only its own lanes' queues. On a cluster the classic interactive queue
    # lives on one node; while that node is down, a bulk worker that knew it would fail
    # to bind it for delayed delivery on every reconnect and never consume again. Pools
    # publish only to their own lanes (routing.routes), so nothing else is needed here.
    CELERY_TASK_QUEUES = tuple(queue for queue in _TOPOLOGY.lane_queues if queue.name in _POOL.queues)
    # Celery looks its default queue up among these before routing even a retry.
    CELERY_TASK_DEFAULT_QUEUE = CELERY_TASK_QUEUES[0].name
    CELERY_TASK_ACKS_LATE = _POOL.acks_late
    CELERY_TASK_REJECT_ON_WORKER_LOST = _POOL.reject_on_worker_lost
    CELERY_WORKER_PREFETCH_MULTIPLIER = _POOL.prefetch_multiplier
    # No soft shutdown, and SIGTERM is not remapped to SIGQUIT: Celery's soft shutdown
    # sleeps its whole timeout inside the signal handler, so its event loop stops. Tasks
    # that finish meanwhile cannot be acked and run again elsewhere, the broker drops the
    # silent connection, the worker reconnects and takes new work while it is dying, and
    # `docker stop` ends in SIGKILL (seen on the compose stack). SIGTERM is Celery's warm
    # shutdown: no new work, running tasks finish and are acked, then it exits; the
    # platform's stop grace (above the pool's drain_seconds) bounds the wait.
    CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 0
    # The same limits the launcher passes on the command line, readable by tasks
    # that pace themselves (the cleanup stops before its soft limit).
    CELERY_TASK_SOFT_TIME_LIMIT = _POOL.soft_time_limit
    CELERY_TASK_TIME_LIMIT = _POOL.time_limit
    # A task that failed for good is rejected, not acked, so RabbitMQ moves it to
    # the dead-letter queue where it can be inspected and replayed.
    # (Celery 5.7 splits its acks_on_failure_or_timeout into these two.)
    CELERY_TASK_ACKS_ON_FAILURE = CELERY_TASK_ACKS_ON_TIMEOUT = not _POOL.acks_late
    # If the broker connection drops, the unacked message is redelivered anyway;
    # cancelling the running copy avoids two copies running at once.
    CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = _POOL.acks_late
