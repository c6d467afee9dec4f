"""Broker generations and the topology each one gets: every lane's queue type, chosen by what the broker offers.

| queue            | RabbitMQ 3.x                           | RabbitMQ 4.x                               |
|------------------|----------------------------------------|--------------------------------------------|
| ``interactive``  | classic, ``x-max-priority`` 9, crash   | quorum, replicated; the broker's delivery  |
|                  | guard in the database; one node        | limit replaces the crash guard             |
| ``bulk``,        | quorum                                 | quorum                                     |
| ``maintenance``, |                                        |                                            |
| ``dead_letter``  |                                        |                                            |

Quorum queues have no message priorities before RabbitMQ 4.0, so on 3.x the lane a
person's click must jump stays classic, on one node. RabbitMQ 4 gives quorum queues
priorities (see ``Priority`` in routing/lanes.py for how the levels are served), so
there every lane is replicated and no queue carries ``x-max-priority`` (a quorum queue
refuses it).

The generation is a stated setting (``RABBITMQ_GENERATION``): every process must
declare the same queues, and the broker refuses a declaration that differs from the
live queue. The pools' start, ``topology --check`` and doctor compare it with the
version the broker announces (routing/broker.py) and fail loudly when they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cache

from celery import current_app
from kombu import Queue

from .lanes import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    LANES,
    MAX_PRIORITY,
    TASK_EXCHANGE,
    Lane,
    QueueType,
)


class BrokerGeneration(IntEnum):
    """RabbitMQ's major series this topology knows how to use."""

    RABBITMQ_3 = 3
    RABBITMQ_4 = 4

    @property
    def quorum_priorities(self) -> bool:
        """Whether quorum queues serve message priorities (RabbitMQ 4.0 and later)."""
        return self >= BrokerGeneration.RABBITMQ_4

    @classmethod
    def of_version(cls, version: str) -> BrokerGeneration:
        """The generation of a broker version such as ``3.10.8`` or ``4.0.5``; ValueError for any other series."""
        major = version.strip().split(".", 1)[0]
        try:
            return cls(int(major))
        except ValueError:
            known = ", ".join(f"{g.value}.x" for g in cls)
            raise ValueError(f"RabbitMQ {version} is not a series this topology knows ({known})") from None


# What deployments state unless told otherwise: the series people install today.
DEFAULT_GENERATION = BrokerGeneration.RABBITMQ_4
# Celery's configuration key the setting reaches processes through (CELERY_BROKER_GENERATION in settings).
GENERATION_CONF_KEY = "broker_generation"


@dataclass(frozen=True)
class Topology:
    """Every queue of the topology as one broker generation gets it."""

    generation: BrokerGeneration
    lane_queues: tuple[Queue, ...]
    # The lanes, then the dead-letter queue.
    all_queues: tuple[Queue, ...]
    # Lanes on quorum queues: the broker counts their deliveries and holds their countdowns.
    quorum_lane_names: frozenset[str]

    def queue_type(self, lane: Lane) -> QueueType:
        """The type of a lane's queue on this generation."""
        return queue_type(lane, self.generation)

    def lane_queue(self, name: str) -> Queue:
        """The declared queue of the lane named `name`."""
        return next(queue for queue in self.lane_queues if queue.name == name)


def queue_type(lane: Lane, generation: BrokerGeneration) -> QueueType:
    """Quorum wherever the broker allows it; classic only for a prioritised lane where quorum queues lack priorities."""
    if lane.prioritised and not generation.quorum_priorities:
        return QueueType.CLASSIC
    return QueueType.QUORUM


def lane_queue(lane: Lane, generation: BrokerGeneration) -> Queue:
    """The durable queue of a lane, bound to the task exchange and dead-lettering into the DLX."""
    kind = queue_type(lane, generation)
    arguments: dict[str, object] = {"x-queue-type": str(kind), "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name}
    if kind is QueueType.CLASSIC:
        arguments["x-max-priority"] = int(MAX_PRIORITY)
    else:
        arguments.update({
            "x-delivery-limit": DELIVERY_LIMIT,
            # Dead letters are confirmed by the dead-letter queue before the message
            # leaves its lane (needs reject-publish overflow, which without a length
            # limit changes nothing else).
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        })
    return Queue(lane.name, exchange=TASK_EXCHANGE, routing_key=lane.name, durable=True, queue_arguments=arguments)


@cache
def topology(generation: BrokerGeneration) -> Topology:
    """The topology of one broker generation."""
    queues = tuple(lane_queue(lane, generation) for lane in LANES)
    return Topology(
        generation=generation,
        lane_queues=queues,
        all_queues=(*queues, DEAD_LETTER_QUEUE),
        quorum_lane_names=frozenset(lane.name for lane in LANES if queue_type(lane, generation) is QueueType.QUORUM),
    )


def deployed() -> Topology:
    """The topology of the generation this deployment states (settings.RABBITMQ_GENERATION, through Celery's conf)."""
    return topology(BrokerGeneration(int(current_app.conf.get(GENERATION_CONF_KEY) or DEFAULT_GENERATION)))
