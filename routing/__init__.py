"""The messaging topology, declared once: exchanges, lane queues, priorities and task routes."""

from .lanes import (
    ALL_QUEUES,
    BULK,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    INTERACTIVE,
    LANE_NAMES,
    LANE_QUEUES,
    LANES,
    MAINTENANCE,
    QUORUM_LANE_NAMES,
    TASK_EXCHANGE,
    Lane,
    Priority,
    QueueType,
    lane_queue,
)
from .routes import TASK_LANES, UnroutedTaskError, lane_for, route_task

__all__ = [
    "ALL_QUEUES",
    "BULK",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DELIVERY_LIMIT",
    "INTERACTIVE",
    "LANES",
    "LANE_NAMES",
    "LANE_QUEUES",
    "MAINTENANCE",
    "QUORUM_LANE_NAMES",
    "TASK_EXCHANGE",
    "TASK_LANES",
    "Lane",
    "Priority",
    "QueueType",
    "UnroutedTaskError",
    "lane_for",
    "lane_queue",
    "route_task",
]
