"""Django task priorities (-100 to 100) onto each lane's message priorities: the one written table.

Django's Tasks API runs a higher priority first, 0 by default. Each band below is sent
as its message priority, never unset (RabbitMQ serves a message without a priority after
every prioritised one, so an unset default would run after a task enqueued at -50):

| Django priority | message priority | interactive, RabbitMQ 3.x | every lane, RabbitMQ 4 |
|-----------------|------------------|---------------------------|------------------------|
| 67 to 100       | 9 (CLICK)        | strict level 9            | high                   |
| 34 to 66        | 7                | strict level 7            | high                   |
| 1 to 33         | 5                | strict level 5            | high                   |
| 0 (default)     | 4 (API)          | strict level 4            | normal                 |
| -33 to -1       | 3                | strict level 3            | normal                 |
| -66 to -34      | 2                | strict level 2            | normal                 |
| -100 to -67     | 1 (WARMUP)       | strict level 1            | normal                 |

RabbitMQ 3.x's classic interactive queue (``x-max-priority`` 9) serves the levels strictly.
RabbitMQ 4's quorum queues have two levels: above ``QUORUM_NORMAL_MAX`` is high, served
about two for one normal, so a positive Django priority goes ahead, not strictly. On
RabbitMQ 3.x the bulk and maintenance lanes are quorum queues without priorities: they
serve in arrival order, and a Django task asking them for a priority is refused.
"""

from __future__ import annotations

from .generations import BrokerGeneration
from .lanes import LANES, QUORUM_NORMAL_MAX, Priority

DJANGO_MIN_PRIORITY, DJANGO_DEFAULT_PRIORITY, DJANGO_MAX_PRIORITY = -100, 0, 100

# (lowest, highest Django priority, message priority), highest band first: the table above.
BANDS: tuple[tuple[int, int, int], ...] = (
    (67, 100, Priority.CLICK),
    (34, 66, 7),
    (1, 33, 5),
    (0, 0, Priority.API),
    (-33, -1, 3),
    (-66, -34, 2),
    (-100, -67, Priority.WARMUP),
)


class PriorityOutOfRangeError(ValueError):
    """Django's priorities are whole numbers from -100 to 100."""


def message_priority(django_priority: int) -> int:
    """The message priority a Django task priority is sent with (on any lane)."""
    for lowest, highest, level in BANDS:
        if lowest <= django_priority <= highest:
            return int(level)
    raise PriorityOutOfRangeError(
        f"priority {django_priority!r} is outside {DJANGO_MIN_PRIORITY} to {DJANGO_MAX_PRIORITY}")


def django_priority(level: int) -> int:
    """The Django priority a message priority of the table is sent for (the highest of its band)."""
    for _, highest, band_level in BANDS:
        if band_level == level:
            return highest
    raise PriorityOutOfRangeError(f"message priority {level!r} is in no band of the table")


def quorum_class(level: int) -> str:
    """How RabbitMQ 4's quorum queues serve a message priority: "high" or "normal"."""
    return "high" if level > QUORUM_NORMAL_MAX else "normal"


_LANES_BY_NAME = {lane.name: lane for lane in LANES}


def serves_priorities(lane: str, generation: BrokerGeneration) -> bool:
    """Whether the lane's queue orders messages by priority on this broker generation."""
    return _LANES_BY_NAME[lane].prioritised or generation.quorum_priorities

