"""Exchanges, lane queues, queue types and priority levels: the one declaration everything else derives from.

Exchange types, and why:

* ``f_brain.tasks`` is a **topic** exchange. Every task message carries its lane's
  name as routing key and each lane queue is bound with exactly that key, so it
  routes as a direct exchange would. Topic, because Celery's native delayed
  delivery (countdown retries and quota deferrals on quorum queues) hands a delayed
  message back through its own exchange with a routing key of ``<delay bits>.<lane>``
  and binds each lane with ``#.<lane>``: a direct exchange cannot match that (Celery
  warns and holds the message in the worker until its ETA instead).
* ``f_brain.dlx`` is a **fanout** dead-letter exchange. Every lane dead-letters into
  it and it delivers to the single ``dead_letter`` queue whatever the original routing
  key was; RabbitMQ keeps the original queue and key in the ``x-death`` header, which
  is what replay uses to put a message back on its own lane.

Queue types, and why (RabbitMQ 3.10, as Debian ships it):

* ``bulk``, ``maintenance`` and ``dead_letter`` are **quorum** queues: replicated by
  Raft across a cluster's nodes, so losing a node (or its disk) loses no message,
  and a publisher confirm means a majority has it. The broker counts deliveries and
  dead-letters a message redelivered more than ``DELIVERY_LIMIT`` times (a worker
  killed by it each time), at least once (``x-dead-letter-strategy``): the crash
  guard's start counting in the database is not needed there.
* ``interactive`` stays a **classic** queue with ``x-max-priority``: quorum queues
  have no message priorities before RabbitMQ 4.0, and a person's click must pass the
  API's and the warm-up's fetches. It keeps the crash guard (weather/guard.py). On a
  cluster a classic queue lives on one node: while that node is down the lane refuses
  publishes (the API answers 503) and its queued fetches wait for it; clicks are
  short-lived and re-asked, so that trade-off is taken. With RabbitMQ 4.x quorum
  queues have two priority levels (normal, high): interactive can then become quorum
  too, with CLICK mapped to high and the guard retired.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from kombu import Exchange, Queue

TASK_EXCHANGE = Exchange("f_brain.tasks", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("f_brain.dlx", type="fanout", durable=True)


class Priority(IntEnum):
    """Message priorities in the interactive lane; RabbitMQ serves higher numbers first."""

    WARMUP = 1
    API = 5
    CLICK = 9


# RabbitMQ keeps one internal sub-queue per priority level, so the range is kept as
# small as the named levels need (its docs advise at most 10).
MAX_PRIORITY = max(Priority)

# Returns a quorum lane allows a message before dead-lettering it. Generous, because
# RabbitMQ 3.10 counts every return, including messages merely prefetched by a replica
# that died (a whole pool killed ten times in a minute must not dead-letter innocent
# batches); a poison message costs at most this many child restarts. The task sees the
# count too and, on the last delivery, marks its work failed with the reason
# (weather/guard.py) before rejecting it into the dead-letter queue.
DELIVERY_LIMIT = 20


class QueueType(StrEnum):
    """RabbitMQ's queue types this topology uses (``x-queue-type``)."""

    CLASSIC = "classic"
    QUORUM = "quorum"


@dataclass(frozen=True)
class Lane:
    """One kind of work, with its own queue and its own worker pool."""

    name: str
    purpose: str
    prioritised: bool = False

    @property
    def queue_type(self) -> QueueType:
        """Classic where message priorities are needed (RabbitMQ 3.x quorum queues have none), else quorum."""
        return QueueType.CLASSIC if self.prioritised else QueueType.QUORUM


INTERACTIVE = Lane("interactive", "one city's fetch asked for by a person or an API client", prioritised=True)
BULK = Lane("bulk", "periodic refresh of every city in provider-sized batches; ETL chains")
MAINTENANCE = Lane("maintenance", "retention cleanup of readings and task results")
LANES: tuple[Lane, ...] = (INTERACTIVE, BULK, MAINTENANCE)
LANE_NAMES: tuple[str, ...] = tuple(lane.name for lane in LANES)
# Lanes on quorum queues: the broker counts their deliveries and holds their countdowns.
QUORUM_LANE_NAMES = frozenset(lane.name for lane in LANES if lane.queue_type is QueueType.QUORUM)


def lane_queue(lane: Lane) -> Queue:
    """The durable queue of a lane, bound to the task exchange and dead-lettering into the DLX."""
    arguments: dict[str, object] = {"x-queue-type": str(lane.queue_type),
                                    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name}
    if lane.prioritised:
        arguments["x-max-priority"] = int(MAX_PRIORITY)
    if lane.queue_type is QueueType.QUORUM:
        arguments.update({
            "x-delivery-limit": DELIVERY_LIMIT,
            # Dead letters are confirmed by the dead-letter queue before the message
            # leaves its lane (needs reject-publish overflow, which without a length
            # limit changes nothing else).
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        })
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
    queue_arguments={"x-queue-type": str(QueueType.QUORUM)},
)

# Every queue of the topology: the lanes, then the dead-letter queue.
ALL_QUEUES: tuple[Queue, ...] = (*LANE_QUEUES, DEAD_LETTER_QUEUE)
