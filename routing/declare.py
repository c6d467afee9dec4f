"""Declaring the topology on the broker: every exchange and queue, or those the broker can take now."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from amqp.exceptions import ChannelError

from .generations import Topology, deployed

log = logging.getLogger(__name__)


def declare_topology(channel: Any, topology: Topology | None = None) -> None:
    """Declare every exchange, lane queue and the dead-letter queue (idempotent), of the deployed generation
    unless another `topology` is given."""
    # All of them before the worker consumes: RabbitMQ silently drops dead letters
    # whose exchange is missing, so the DLX must exist before a lane rejects anything.
    for queue in (topology or deployed()).all_queues:
        queue.bind(channel).declare()


def declare_what_can_be(connection: Any) -> list[str]:
    """Declare each queue on a channel of its own; those the broker refuses now are logged and skipped.

    On a cluster a classic queue (the interactive lane) lives on one node: while that
    node is down its declaration fails with NOT_FOUND. A worker of another lane that
    reconnects to the surviving nodes must not die of it: its own queue, which Celery
    declares before consuming, is what it needs. Returns the queues skipped.
    """
    skipped = []
    for queue in deployed().all_queues:
        channel = connection.channel()
        try:
            queue.bind(channel).declare()
        except ChannelError as error:
            skipped.append(queue.name)
            log.warning("queue %s not declared now (%s); the next reconnect tries again", queue.name, error)
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return skipped


