"""Enqueueing work from a request: task ids known up front, publishing after commit, clear broker errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from celery import chain, uuid
from django.db import IntegrityError, transaction
from django.utils import timezone

from routing import Priority
from routing.broker import BROKER_ERRORS

from .models import PendingFetch
from .refresh import UnknownCityError
from .tasks import extract_data, fetch_weather_for_city, load_data, transform_data

# A request should answer 503 within a couple of seconds when the broker is away,
# not hang through Celery's default publish retries.
REQUEST_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# A pending fetch older than this is presumed lost (its worker and every
# redelivery gone): the next request replaces it instead of returning a dead id.
# Covers the interactive hard limit times the attempts, plus the retry backoff.
PENDING_FETCH_TTL = timedelta(minutes=2)


class BrokerUnavailableError(RuntimeError):
    """The broker did not accept the message."""


@contextmanager
def publishing() -> Iterator[None]:
    """Turn the many ways a publish fails while the broker is away into one error."""
    try:
        yield
    except BROKER_ERRORS as error:
        raise BrokerUnavailableError(f"the task broker did not accept the message: {error}") from error


@dataclass(frozen=True)
class Enqueued:
    """A fetch's task id, and whether this call published it or joined one already pending."""

    task_id: str
    deduplicated: bool


def _claim(city_id: int) -> Enqueued:
    """Register a new pending fetch for the city, or return the one already there.

    The unique city column makes this race-free across processes: of two
    concurrent inserts one fails and reads the winner's row.
    """
    task_id = uuid()
    try:
        with transaction.atomic():
            pending, created = PendingFetch.objects.get_or_create(city_id=city_id, defaults={"task_id": task_id})
    except IntegrityError:
        # Either another request claimed the city first, or the city is gone.
        pending, created = PendingFetch.objects.filter(city_id=city_id).first(), False
        if pending is None:
            raise UnknownCityError(f"city {city_id} does not exist") from None
    if created:
        return Enqueued(task_id, deduplicated=False)
    if pending.created_at < timezone.now() - PENDING_FETCH_TTL:
        replaced = PendingFetch.objects.filter(pk=pending.pk, task_id=pending.task_id).update(
            task_id=task_id, created_at=timezone.now())
        if replaced:
            return Enqueued(task_id, deduplicated=False)
        pending.refresh_from_db()
    return Enqueued(pending.task_id, deduplicated=True)


def enqueue_city_fetch(city_id: int, priority: Priority = Priority.API) -> Enqueued:
    """Fetch one city on the interactive lane, at most once at a time; returns the task id at once.

    The id is generated here so the caller can answer with it before the message
    is published (Celery's `delay_on_commit` returns nothing); the message goes
    out when the surrounding transaction commits, and not at all if it rolls back.
    """
    enqueued = _claim(city_id)
    if enqueued.deduplicated:
        return enqueued

    def publish() -> None:
        try:
            with publishing():
                fetch_weather_for_city.apply_async(
                    args=[city_id], task_id=enqueued.task_id, priority=int(priority),
                    retry=True, retry_policy=REQUEST_PUBLISH_RETRY,
                )
        except BrokerUnavailableError:
            # Nothing was queued: do not let later requests join a fetch that does not exist.
            PendingFetch.objects.filter(task_id=enqueued.task_id).delete()
            raise

    transaction.on_commit(publish, robust=False)
    return enqueued


def enqueue_daily_summary(day: str | None) -> str:
    """Start extract -> transform -> load for a UTC day; returns the id of the last step."""
    workflow = chain(extract_data.s(day), transform_data.s(), load_data.s())
    with publishing():
        result = workflow.apply_async(retry=True, retry_policy=REQUEST_PUBLISH_RETRY)
    return result.id
