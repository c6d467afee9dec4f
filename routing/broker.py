"""Reading the live state of the declared queues from the broker itself."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import NotFound, PreconditionFailed

from .lanes import DEAD_LETTER_QUEUE, LANE_QUEUES


@dataclass(frozen=True)
class QueueState:
    """What the broker says of one queue."""

    name: str
    exists: bool
    messages: int = 0
    consumers: int = 0


def queue_state(connection: Any, name: str) -> QueueState:
    """Depth and consumers of a queue by a passive declare (no management plugin needed)."""
    channel = connection.channel()
    try:
        _, messages, consumers = channel.queue_declare(queue=name, passive=True)
        return QueueState(name, True, messages, consumers)
    except NotFound:
        return QueueState(name, False)
    finally:
        # A channel the broker closed (its 404 reply) is already gone.
        with contextlib.suppress(Exception):
            channel.close()


def declared_queue_names() -> list[str]:
    """Every queue of the topology: the lanes, then the dead-letter queue."""
    return [queue.name for queue in (*LANE_QUEUES, DEAD_LETTER_QUEUE)]


def check_arguments(connection: Any) -> list[str]:
    """Problems with queues whose broker-side arguments differ from the declaration."""
    problems = []
    for queue in (*LANE_QUEUES, DEAD_LETTER_QUEUE):
        channel = connection.channel()
        try:
            # A non-passive declare with the declared arguments fails with
            # PRECONDITION_FAILED when the live queue was created differently.
            channel.queue_declare(
                queue=queue.name, durable=queue.durable, auto_delete=False,
                arguments=queue.queue_arguments or {},
            )
        except PreconditionFailed as error:
            problems.append(f"queue {queue.name!r} exists with other arguments: {error.reply_text}")
        finally:
            # A channel the broker closed (its 404 reply) is already gone.
            with contextlib.suppress(Exception):
                channel.close()
    return problems
