"""The messaging topology, declared once: exchanges, lane queues, priorities and task routes."""

from .lanes import (
    ALL_QUEUES,
    BULK,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    INTERACTIVE,
    LANE_NAMES,
    LANE_QUEUES,
    LANES,
    MAINTENANCE,
    TASK_EXCHANGE,
    Lane,
    Priority,
    lane_queue,
)
from .routes import TASK_LANES, UnroutedTaskError, lane_for, route_task

__all__ = [
    "ALL_QUEUES",
    "BULK",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "INTERACTIVE",
    "LANES",
    "LANE_NAMES",
    "LANE_QUEUES",
    "MAINTENANCE",
    "TASK_EXCHANGE",
    "TASK_LANES",
    "Lane",
    "Priority",
    "UnroutedTaskError",
    "lane_for",
    "lane_queue",
    "route_task",
]
