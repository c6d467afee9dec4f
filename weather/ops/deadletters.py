"""Reading, replaying and purging the dead-letter queue."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from amqp import Message
from django_celery_results.models import TaskResult

from routing import DEAD_LETTER_QUEUE, DELIVERY_LIMIT, LANE_NAMES, TASK_EXCHANGE
from routing.broker import broker_connection
from weather.models import RefreshBatch, TaskAttempt


@dataclass(frozen=True)
class DeadLetter:
    """One dead message, described for a person."""

    task_id: str
    task: str
    args: str
    lane: str
    reason: str
    why: str
    raw: Any

    def as_dict(self) -> dict:
        """JSON-ready fields (without the raw message)."""
        return {k: v for k, v in self.__dict__.items() if k != "raw"}


def _why(task_id: str, task: str, args: list, death_reason: str) -> str:
    if death_reason == "delivery_limit":
        # A quorum lane's broker counted the deliveries (routing.lanes.DELIVERY_LIMIT).
        return (f"delivered more than {DELIVERY_LIMIT} times without ending (its worker died or hit its hard "
                "time limit each time)")
    attempt = TaskAttempt.objects.filter(task_id=task_id).first()
    if attempt is not None and attempt.starts > 1:
        return f"crashed its worker {attempt.starts - 1} times (worker lost or killed mid-task)"
    if task == "weather.tasks.refresh_weather_batch" and len(args) >= 2:
        # Batches store no result; their row says what went wrong.
        with contextlib.suppress(ValueError, TypeError):
            batch = RefreshBatch.objects.filter(run_id=args[0], index=args[1])
            if error := batch.values_list("error", flat=True).first():
                return error
    result = TaskResult.objects.filter(task_id=task_id).first()
    if result is not None and result.status == "FAILURE":
        try:
            error = json.loads(result.result)
            return f"{error.get('exc_type')}: {error.get('exc_message')}"
        except (TypeError, ValueError, AttributeError):
            return str(result.result)[:300]
    return f"dead-lettered by RabbitMQ ({death_reason})"


def describe(message: Any) -> DeadLetter:
    """What a dead message was, where it came from and why it died."""
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]
    death = deaths[0]
    task_id = str(headers.get("id", "?"))
    task = str(headers.get("task", "?"))
    try:
        args, kwargs, _ = json.loads(message.body)
        arguments = json.dumps({"args": args, "kwargs": kwargs})[:300]
    except (TypeError, ValueError):
        args, arguments = [], str(headers.get("argsrepr", "?"))[:300]
    reason = str(death.get("reason", "?"))
    return DeadLetter(task_id=task_id, task=task, args=arguments, lane=str(death.get("queue", "?")),
                      reason=reason, why=_why(task_id, task, args if isinstance(args, list) else [], reason),
                      raw=message)


@contextmanager
def held_messages(limit: int | None = None) -> Iterator[tuple[Any, list[Any]]]:
    """Take messages off the dead-letter queue unacknowledged; whatever is not acked goes back."""
    with broker_connection(write=True) as connection:
        channel = connection.channel()
        messages: list[Any] = []
        try:
            while limit is None or len(messages) < limit:
                message = channel.basic_get(DEAD_LETTER_QUEUE.name, no_ack=False)
                if message is None:
                    break
                messages.append(message)
            yield channel, messages
        finally:
            # Closing the channel returns every unacknowledged message to the queue.
            channel.close()


def list_dead_letters(limit: int | None = None) -> list[DeadLetter]:
    """The dead messages, left where they are."""
    with held_messages(limit) as (_, messages):
        return [describe(message) for message in messages]


def replay(task_ids: set[str] | None = None) -> list[DeadLetter]:
    """Publish dead messages (all, or those ids) back on their own lane; returns what was replayed."""
    replayed = []
    with held_messages() as (channel, messages):
        channel.confirm_select()
        for message in messages:
            letter = describe(message)
            if task_ids is not None and letter.task_id not in task_ids:
                continue
            if letter.lane not in LANE_NAMES:
                continue  # not from a lane of ours: leave it for a person to look at
            properties = {key: value for key, value in message.properties.items()
                          if key in ("content_type", "content_encoding", "priority", "correlation_id", "reply_to")}
            headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
            # A replay is an operator's fresh attempt: the full retry budget again, and
            # no expiry that has long passed (Celery would discard the message as revoked).
            headers["retries"] = 0
            headers.pop("expires", None)
            copy = Message(message.body, application_headers=headers, delivery_mode=2, **properties)
            # Its crash count forgotten first: the database away fails the replay before anything is sent
            # (after the publish, it left the letter and its copy both, found by the nemesis).
            TaskAttempt.objects.filter(task_id=letter.task_id).delete()
            # Confirmed before the dead copy is acked: a crash in between duplicates, never loses.
            # Mandatory: a lane queue that cannot take it now (its node down) fails the replay, keeping the letter.
            channel.basic_publish(copy, exchange=TASK_EXCHANGE.name, routing_key=letter.lane, mandatory=True)
            channel.basic_ack(message.delivery_tag)
            replayed.append(letter)
    return replayed


def purge() -> int:
    """Drop every dead message; returns how many."""
    with broker_connection(write=True) as connection:
        return connection.default_channel.queue_purge(DEAD_LETTER_QUEUE.name) or 0
