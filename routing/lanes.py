"""Exchanges, lane queues and priority levels: the one declaration everything else derives from.

Exchange types, and why:

* ``f_brain.tasks`` is a **direct** exchange. Every task message carries its lane's
  name as routing key and each lane queue is bound with exactly that key, so routing
  is an exact-match lookup in the broker: no pattern matching (topic) and no copies
  (fanout). Adding a lane is one more queue bound with one more key.
* ``f_brain.dlx`` is a **fanout** dead-letter exchange. Every lane dead-letters into
  it and it delivers to the single ``dead_letter`` queue whatever the original routing
  key was; RabbitMQ keeps the original queue and key in the ``x-death`` header, which
  is what replay uses to put a message back on its own lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from kombu import Exchange, Queue

TASK_EXCHANGE = Exchange("f_brain.tasks", type="direct", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("f_brain.dlx", type="fanout", durable=True)


class Priority(IntEnum):
    """Message priorities in the interactive lane; RabbitMQ serves higher numbers first."""

    WARMUP = 1
    API = 5
    CLICK = 9


# RabbitMQ keeps one internal sub-queue per priority level, so the range is kept as
# small as the named levels need (its docs advise at most 10).
MAX_PRIORITY = max(Priority)


@dataclass(frozen=True)
class Lane:
    """One kind of work, with its own queue and its own worker pool."""

    name: str
    purpose: str
    prioritised: bool = False


INTERACTIVE = Lane("interactive", "one city's fetch asked for by a person or an API client", prioritised=True)
BULK = Lane("bulk", "periodic refresh of every city in provider-sized batches; ETL chains")
MAINTENANCE = Lane("maintenance", "retention cleanup of readings and task results")
LANES: tuple[Lane, ...] = (INTERACTIVE, BULK, MAINTENANCE)
LANE_NAMES: tuple[str, ...] = tuple(lane.name for lane in LANES)


def lane_queue(lane: Lane) -> Queue:
    """The durable queue of a lane, bound to the task exchange and dead-lettering into the DLX."""
    arguments: dict[str, object] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name}
    if lane.prioritised:
        arguments["x-max-priority"] = int(MAX_PRIORITY)
    return Queue(
        lane.name,
        exchange=TASK_EXCHANGE,
        routing_key=lane.name,
        durable=True,
        queue_arguments=arguments,
    )


LANE_QUEUES: tuple[Queue, ...] = tuple(lane_queue(lane) for lane in LANES)

DEAD_LETTER_QUEUE = Queue(
    "dead_letter",
    exchange=DEAD_LETTER_EXCHANGE,
    routing_key="dead_letter",
    durable=True,
)

# Every queue of the topology: the lanes, then the dead-letter queue.
ALL_QUEUES: tuple[Queue, ...] = (*LANE_QUEUES, DEAD_LETTER_QUEUE)
