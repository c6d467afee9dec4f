"""Task messages carry their expiry for the worker, never as a broker TTL."""

from __future__ import annotations

from typing import Any


def leave_expiry_to_the_worker(properties: dict | None = None, **_: Any) -> None:
    """before_task_publish: drop the AMQP `expiration` Celery derives from `expires`.

    Every lane dead-letters whatever RabbitMQ gives up on (routing.lanes), and the
    broker cannot dead-letter some reasons and drop others. With a TTL, a periodic
    refresh that expired while its pool was paused or down would land among the dead
    letters (reason `expired`), page whoever watches them and be replayable into a
    slot the next run already covers. Without one, the message waits in its lane and
    the worker that receives it sees the `expires` header and discards it as REVOKED,
    which is what a stale periodic message should come to.
    """
    if properties is not None:
        properties.pop("expiration", None)
