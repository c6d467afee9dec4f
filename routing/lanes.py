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

Queue types depend on the broker generation (routing/generations.py): quorum
wherever the broker allows it, so losing a node (or its disk) loses no message and a
publisher confirm means a majority has it. The broker counts a quorum queue's
deliveries and dead-letters a message redelivered more than ``DELIVERY_LIMIT`` times
(a worker killed by it each time), at least once (``x-dead-letter-strategy``): the
crash guard's start counting in the database is needed only on a classic queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from kombu import Exchange, Queue

TASK_EXCHANGE = Exchange("f_brain.tasks", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("f_brain.dlx", type="fanout", durable=True)


class Priority(IntEnum):
    """Message priorities in the interactive lane; RabbitMQ serves higher numbers first.

    The same numbers go to every broker generation, chosen so that each serves a click
    first (the README's design notes have the table):

    * RabbitMQ 3.x, classic queue with ``x-max-priority``: CLICK, then API, then
      WARMUP, strictly.
    * RabbitMQ 4.0 to 4.2, quorum queue: two levels, no queue argument. Above
      ``QUORUM_NORMAL_MAX`` (4) is high: CLICK only. API and WARMUP are normal, served
      in arrival order between themselves, and high is served about two for one
      normal, so a click goes ahead but not strictly.
    * RabbitMQ 4.3, quorum queue: up to 32 strict levels, where the queue declares
      ``x-max-priority`` (refused before 4.3, so not declared here: see
      routing/generations.py).

    API is 4, the highest normal level, so that only a person's click is high.
    """

    WARMUP = 1
    API = 4
    CLICK = 9


# Priorities above this are "high" on RabbitMQ 4.0 to 4.2's quorum queues (lower ones are normal).
QUORUM_NORMAL_MAX = 4

# A classic priority queue keeps one internal sub-queue per level, so the range is kept as
# small as the named levels need (RabbitMQ's docs advise at most 10).
MAX_PRIORITY = max(Priority)

# Returns a quorum lane allows a message before dead-lettering it (RabbitMQ 4's default is
# the same 20). Generous, because RabbitMQ 3.10 counts every return, including messages merely prefetched by a replica
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
    # Needs message priorities: a classic queue on brokers whose quorum queues have none.
    prioritised: bool = False


INTERACTIVE = Lane("interactive", "one city's fetch asked for by a person or an API client", prioritised=True)
BULK = Lane("bulk", "periodic refresh of every city in provider-sized batches; ETL chains")
MAINTENANCE = Lane("maintenance", "retention cleanup of readings and task results")
LANES: tuple[Lane, ...] = (INTERACTIVE, BULK, MAINTENANCE)
LANE_NAMES: tuple[str, ...] = tuple(lane.name for lane in LANES)

# The same on every broker generation: quorum, replicated.
DEAD_LETTER_QUEUE = Queue(
    "dead_letter",
    exchange=DEAD_LETTER_EXCHANGE,
    routing_key="dead_letter",
    durable=True,
    queue_arguments={"x-queue-type": str(QueueType.QUORUM)},
)
