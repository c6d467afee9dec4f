"""Move a live broker to this topology: queues whose type or arguments changed, and the task exchange's type.

RabbitMQ cannot change a queue's type (classic to quorum) or an exchange's type
(direct to topic) in place: a redeclaration is refused. `manage.py topology
--migrate` does what an operator would by hand, without losing a message:

1. the task exchange, if declared with another type, is deleted and declared
   again (its bindings go with it; step 2 binds every lane again);
2. for each queue that exists with other arguments (its consumers stopped first:
   the command refuses while any is attached), every message is moved, with
   publisher confirms, to a holding queue; the old queue is deleted, the new one
   declared and bound, and the messages moved back, in order, with their
   properties (priority included).

A crash in between leaves the messages in the holding queue
(`f_brain.migrating.<queue>`), never nowhere; running the command again finishes
the move. Publishers meanwhile get refusals (the API answers 503), not losses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from amqp import Message
from kombu import Connection, Queue

from .broker import mismatches, queue_state
from .declare import declare_topology
from .generations import Topology, deployed
from .lanes import TASK_EXCHANGE

HOLDING_PREFIX = "f_brain.migrating."


class MigrationRefusedError(RuntimeError):
    """The migration cannot run now (a queue to move still has consumers)."""


@contextlib.contextmanager
def _confirmed_channel(connection: Connection) -> Iterator[Any]:
    channel = connection.channel()
    channel.confirm_select()
    try:
        yield channel
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def _move(channel: Any, source: str, target: str) -> int:
    """Every message of `source` published to `target` (confirmed) before it is acked; returns how many."""
    moved = 0
    while (message := channel.basic_get(source, no_ack=False)) is not None:
        properties = {key: value for key, value in message.properties.items()
                      if key in ("content_type", "content_encoding", "priority", "correlation_id", "reply_to",
                                 "expiration", "message_id", "timestamp", "type")}
        # The broker's own bookkeeping stays behind (a fresh delivery count in the new queue).
        headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
        channel.basic_publish(Message(message.body, application_headers=headers, delivery_mode=2, **properties),
                              exchange="", routing_key=target)
        channel.basic_ack(message.delivery_tag)
        moved += 1
    return moved


def migrate(connection: Connection, report: Callable[[str], None] = print,
            topology: Topology | None = None) -> list[str]:
    """Bring the broker to the declared topology (the deployed generation's unless `topology` is given), keeping
    every message; returns what changed.

    Raises MigrationRefusedError while a queue to move has consumers.
    """
    target = topology or deployed()
    found = mismatches(connection, target)
    moving = [m.name for m in found if m.kind == "queue"]
    busy = [f"{name} ({state.consumers} consumer(s))" for name in moving
            if (state := queue_state(connection, name)).consumers]
    if busy:
        raise MigrationRefusedError(f"stop the pools consuming {', '.join(busy)} first: a queue being moved "
                                    "must have no consumer")
    with _confirmed_channel(connection) as channel:
        if any(m.kind == "exchange" for m in found):
            channel.exchange_delete(TASK_EXCHANGE.name)
            report(f"exchange {TASK_EXCHANGE.name!r}: declared again as {TASK_EXCHANGE.type}")
        for name in moving:
            holding = HOLDING_PREFIX + name
            Queue(holding, durable=True, queue_arguments={"x-queue-type": "quorum"}).bind(channel).declare()
            _move(channel, name, holding)
            channel.queue_delete(name)
    # A new channel for the new queues: RabbitMQ 3.10 keeps a channel's notion of a queue's
    # type, and publishing on the old channel to a queue declared again as quorum crashes it.
    with _confirmed_channel(connection) as channel:
        declare_topology(channel, target)
        # Back into the new queues; and whatever a crashed earlier run left in a holding queue.
        for queue in target.all_queues:
            holding = HOLDING_PREFIX + queue.name
            if queue_state(connection, holding).exists:
                back = _move(channel, holding, queue.name)
                channel.queue_delete(holding)
                report(f"queue {queue.name!r}: declared again as {queue.queue_arguments}, {back} message(s) kept")
    return [f"{m.kind} {m.name}" for m in found]
