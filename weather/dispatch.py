"""Enqueueing work from a request: task ids known up front, publishing after commit, clear broker errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from amqp.exceptions import AMQPError
from celery import chain, uuid
from django.db import transaction
from kombu.exceptions import KombuError

from routing import Priority

from .tasks import extract_data, fetch_weather_for_city, load_data, transform_data

# A request should answer 503 within a couple of seconds when the broker is away,
# not hang through Celery's default publish retries.
REQUEST_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
BROKER_ERRORS = (KombuError, AMQPError, OSError)


class BrokerUnavailableError(RuntimeError):
    """The broker did not accept the message."""


@contextmanager
def publishing() -> Iterator[None]:
    """Turn the many ways a publish fails while the broker is away into one error."""
    try:
        yield
    except BROKER_ERRORS as error:
        raise BrokerUnavailableError(f"the task broker did not accept the message: {error}") from error


def enqueue_city_fetch(city_id: int, priority: Priority = Priority.API) -> str:
    """Publish a fetch of one city once the current transaction commits; returns its task id.

    The id is generated here so the caller can answer with it before the message
    is published (Celery's `delay_on_commit` returns nothing).
    """
    task_id = uuid()

    def publish() -> None:
        with publishing():
            fetch_weather_for_city.apply_async(
                args=[city_id], task_id=task_id, priority=int(priority),
                retry=True, retry_policy=REQUEST_PUBLISH_RETRY,
            )

    transaction.on_commit(publish, robust=False)
    return task_id


def enqueue_daily_summary(day: str | None) -> str:
    """Start extract -> transform -> load for a UTC day; returns the id of the last step."""
    workflow = chain(extract_data.s(day), transform_data.s(), load_data.s())
    with publishing():
        result = workflow.apply_async(retry=True, retry_policy=REQUEST_PUBLISH_RETRY)
    return result.id
