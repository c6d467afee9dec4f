"""Reading the live state of the declared queues from the broker itself."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import AMQPError, NotFound, PreconditionFailed
from kombu.exceptions import KombuError

from .lanes import ALL_QUEUES

# The ways talking to an absent or unhappy broker fails: kombu's connection errors
# (OperationalError is not an OSError), AMQP channel errors and plain socket errors.
BROKER_ERRORS: tuple[type[Exception], ...] = (KombuError, AMQPError, OSError)
# How long a request or a command waits for the broker before it says it is away.
CONNECT_TIMEOUT_S = 3.0


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


def connect(connection: Any, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """Open `connection` with one quick try, so a caller answers "broker away" instead of hanging."""
    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    return connection


def check_arguments(connection: Any) -> list[str]:
    """Problems with queues whose broker-side arguments differ from the declaration."""
    problems = []
    for queue in ALL_QUEUES:
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
