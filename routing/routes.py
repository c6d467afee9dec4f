"""The task -> lane table and the Celery router that applies it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .lanes import BULK, INTERACTIVE, LANE_NAMES, MAINTENANCE

# Every task the project can send, by name. Celery's own canvas helpers are listed
# too: a chain or chord step that Celery publishes for us must land on a declared
# lane like any other message.
TASK_LANES: dict[str, str] = {
    "weather.tasks.fetch_weather_for_city": INTERACTIVE.name,
    "weather.tasks.update_all_weather_data": BULK.name,
    "weather.tasks.refresh_weather_batch": BULK.name,
    "weather.tasks.extract_data": BULK.name,
    "weather.tasks.transform_data": BULK.name,
    "weather.tasks.load_data": BULK.name,
    "weather.tasks.cleanup_old_weather_data": MAINTENANCE.name,
    "celery.backend_cleanup": MAINTENANCE.name,
    "celery.accumulate": BULK.name,
    "celery.chain": BULK.name,
    "celery.chord": BULK.name,
    "celery.chord_unlock": BULK.name,
    "celery.chunks": BULK.name,
    "celery.group": BULK.name,
    "celery.map": BULK.name,
    "celery.starmap": BULK.name,
}


class UnroutedTaskError(LookupError):
    """A task was sent that the route table does not know: fail loudly, never guess a lane."""


def lane_for(task_name: str) -> str:
    """The lane a task runs on."""
    try:
        lane = TASK_LANES[task_name]
    except KeyError:
        raise UnroutedTaskError(
            f"task {task_name!r} has no lane; add it to routing.routes.TASK_LANES"
        ) from None
    if lane not in LANE_NAMES:
        raise UnroutedTaskError(f"task {task_name!r} is routed to undeclared lane {lane!r}")
    return lane


def lane_of_message(task_name: str, delivery_info: Mapping[str, Any] | None) -> str:
    """The lane a delivered message came from: its task's route, else the lane its routing key ends with.

    Not the routing key alone: a message that came back through Celery's native delayed
    delivery (a countdown retry on a quorum lane) carries ``<delay bits>.<lane>``.
    """
    try:
        return lane_for(task_name)
    except UnroutedTaskError:
        return ((delivery_info or {}).get("routing_key") or "unknown").rsplit(".", 1)[-1]


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None, **kw: Any) -> dict:
    """Celery router: every message goes to its lane's queue on the task exchange, or is refused.

    Mandatory: on a cluster, a classic queue whose node is down takes nothing, and
    RabbitMQ confirms a message that reached no queue (measured: a click answered 202
    and its fetch vanished). With the flag it returns the message instead, and the
    publish fails (the API answers 503, a task retries).
    """
    return {"queue": _named_lane(name, options), "mandatory": True}


def _named_lane(name: str, options: Mapping[str, Any]) -> str:
    """The route table's lane; for a task it does not list, the declared lane the sender named.

    Django's Tasks API names the lane of each enqueue (``queue_name``, checked against the
    lanes before it is sent: weather/lanetasks): those tasks are routed by what they say.
    A sender naming nothing, or an undeclared queue, is refused as before.
    """
    if name not in TASK_LANES:
        queue = options.get("queue")
        named = getattr(queue, "name", queue)
        if named in LANE_NAMES:
            return str(named)
    return lane_for(name)
