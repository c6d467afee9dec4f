"""The one reader of broker state: reachability, queue depth and consumers, with one "broker unavailable" error.

Every surface that asks the broker something (the ops page, `/api/ops/queues`,
`/metrics`, `/readyz`, `topology --check`, dead letters, the test harness) goes
through here, so a broker that is away reads the same everywhere: one exception,
raised within `CONNECT_TIMEOUT_S`, never a hang and never a library's own error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import AMQPError, NotFound, PreconditionFailed
from celery import current_app
from kombu.exceptions import KombuError

from .lanes import ALL_QUEUES

# The ways talking to an absent or unhappy broker fails: kombu's connection errors
# (OperationalError is not an OSError), AMQP channel errors and plain socket errors.
BROKER_ERRORS: tuple[type[Exception], ...] = (KombuError, AMQPError, OSError)
# How long a request or a command waits for the broker before it says it is away.
CONNECT_TIMEOUT_S = 3.0


class BrokerUnavailableError(RuntimeError):
    """The broker could not be reached, or did not accept what was asked of it."""


@dataclass(frozen=True)
class QueueState:
    """What the broker says of one queue."""

    name: str
    exists: bool
    messages: int = 0
    consumers: int = 0


@contextlib.contextmanager
def unavailable_on_broker_errors(doing: str) -> Iterator[None]:
    """Turn the many ways a broker call fails into BrokerUnavailableError, saying what was being done."""
    try:
        yield
    except BROKER_ERRORS as error:
        raise BrokerUnavailableError(f"broker unavailable while {doing}: {error}") from error


def connect(connection: Any, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """Open `connection` with one quick try, so a caller answers "broker away" instead of hanging."""
    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    return connection


@contextlib.contextmanager
def broker_connection(*, write: bool = False) -> Iterator[Any]:
    """A connected connection of the current Celery app; BrokerUnavailableError if none can be had."""
    with unavailable_on_broker_errors("connecting"):
        pool_connection = current_app.connection_for_write() if write else current_app.connection_for_read()
    with pool_connection as connection:
        with unavailable_on_broker_errors("connecting"):
            connect(connection)
        with unavailable_on_broker_errors("talking to it"):
            yield connection


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


def queue_states(names: Iterable[str] | None = None) -> dict[str, QueueState]:
    """Depth and consumers of these queues (default: every declared queue), read in one connection."""
    wanted = [queue.name for queue in ALL_QUEUES] if names is None else list(names)
    with broker_connection() as connection:
        return {name: queue_state(connection, name) for name in wanted}


def ensure_reachable() -> None:
    """Return when the broker accepts a connection; raise BrokerUnavailableError otherwise."""
    with broker_connection():
        pass


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
