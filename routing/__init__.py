"""The messaging topology, declared once: exchanges, lane queues, priorities and task routes."""

from .lanes import (
    ALL_QUEUES,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    LANE_NAMES,
    LANE_QUEUES,
    LANES,
    TASK_EXCHANGE,
    Lane,
    Priority,
    lane_queue,
)
from .routes import TASK_LANES, UnroutedTaskError, lane_for, route_task

__all__ = [
    "ALL_QUEUES",
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "LANES",
    "LANE_NAMES",
    "LANE_QUEUES",
    "TASK_EXCHANGE",
    "TASK_LANES",
    "Lane",
    "Priority",
    "UnroutedTaskError",
    "lane_for",
    "lane_queue",
    "route_task",
]
