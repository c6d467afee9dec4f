"""The messaging topology, declared once: exchanges, lane queues per broker generation, priorities and task routes."""

from .generations import (
    DEFAULT_GENERATION,
    BrokerGeneration,
    Topology,
    deployed,
    topology,
)
from .lanes import (
    BULK,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    INTERACTIVE,
    LANE_NAMES,
    LANES,
    MAINTENANCE,
    QUORUM_NORMAL_MAX,
    TASK_EXCHANGE,
    Lane,
    Priority,
    QueueType,
)
from .routes import TASK_LANES, UnroutedTaskError, lane_for, route_task

__all__ = [
    "BULK",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DEFAULT_GENERATION",
    "DELIVERY_LIMIT",
    "INTERACTIVE",
    "LANES",
    "LANE_NAMES",
    "MAINTENANCE",
    "QUORUM_NORMAL_MAX",
    "TASK_EXCHANGE",
    "TASK_LANES",
    "BrokerGeneration",
    "Lane",
    "Priority",
    "QueueType",
    "Topology",
    "UnroutedTaskError",
    "deployed",
    "lane_for",
    "route_task",
    "topology",
]
