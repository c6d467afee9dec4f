"""A consumer bootstep that declares the whole topology whenever a worker (re)connects."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from .lanes import ALL_QUEUES


def declare_topology(channel: Any) -> None:
    """Declare every exchange, lane queue and the dead-letter queue (idempotent)."""
    # All of them before the worker consumes: RabbitMQ silently drops dead letters
    # whose exchange is missing, so the DLX must exist before a lane rejects anything.
    for queue in ALL_QUEUES:
        queue.bind(channel).declare()


class DeclareTopology(bootsteps.StartStopStep):
    """Runs on every consumer start, so a broker that lost its state gets it back."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, parent: Any) -> None:
        with parent.app.connection_for_write() as connection:
            declare_topology(connection.default_channel)
