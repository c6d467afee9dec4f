"""Enqueueing work from a request: task ids known up front, publishing after commit, clear broker errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from celery import chain, uuid
from celery.result import AsyncResult
from celery.states import READY_STATES
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from routing import Priority
from routing.broker import BrokerUnavailableError, ensure_publishing_allowed
from routing.priorities import django_priority

from . import jobs
from .claims import insert_unless_held
from .lanetasks.api import Task
from .lanetasks.backend import enqueue_as
from .models import DailySummaryRun, PendingFetch
from .publishing import REQUEST_CONFIRM_TIMEOUT_S, publishing, request_publish_retry
from .refresh import UnknownCityError
from .tasks import extract_data, fetch_weather_for_city, load_data, transform_data

# A pending fetch older than this is presumed lost (its worker and every
# redelivery gone): the next request replaces it instead of returning a dead id.
# Covers the interactive hard limit times the attempts, plus the retry backoff.
PENDING_FETCH_TTL = timedelta(minutes=2)
# A day's ETL chain not ended after this is presumed lost: three bulk steps at
# most at the bulk pool's hard limit each, plus queue wait.
DAILY_SUMMARY_TTL = timedelta(minutes=30)


@dataclass(frozen=True)
class Enqueued:
    """A task id, and whether this call published it or joined one already pending."""

    task_id: str
    deduplicated: bool


def _claim(model: type[Model], key: dict[str, Any], is_stale: Callable[[Any], bool],
           savepoint: bool = True) -> Enqueued:
    """Register new work under a unique key (a city, a day), or return the task id already holding it.

    The unique key makes this race-free across processes: of two concurrent
    inserts one does nothing, and reads the winner's row. A holder that `is_stale`
    (lost, or ended) is replaced by a conditional update, so two requests never both win.
    `savepoint=False` inside a transaction of the claim's own, which a failed insert may abort.
    """
    task_id = uuid()
    held = None
    # A holder can end (its row deleted) between the insert and the read: then try again.
    for _ in range(3):
        if insert_unless_held(model, key, task_id, savepoint):
            return Enqueued(task_id, deduplicated=False)
        held = model.objects.filter(**key).first()
        if held is not None:
            break
    if held is None:
        raise IntegrityError(f"{model.__name__} {key} could be neither claimed nor read")
    if is_stale(held):
        replaced = model.objects.filter(pk=held.pk, task_id=held.task_id).update(
            task_id=task_id, **{model.CLAIMED_AT: timezone.now()})
        if replaced:
            return Enqueued(task_id, deduplicated=False)
        held.refresh_from_db()
    return Enqueued(held.task_id, deduplicated=True)


def _claim_and_publish(model: type[Model], key: dict[str, Any], is_stale: Callable[[Any], bool],
                       publish: Callable[[str], None]) -> Enqueued:
    """Claim the work under `key` and publish its message, so that no claim outlives a message never queued.

    Inside a caller's transaction the message goes out when it commits (nothing if it rolls
    back), and a publish the broker refuses releases the claim. Otherwise the claim and the
    publish share a transaction of their own, the publish last: a refused publish rolls the
    claim back with it, even when the database went away meanwhile. (Released by a delete
    instead, a claim stayed when the delete met the database away, and the requests that
    joined it for two minutes followed a task that did not exist: found by the nemesis, a
    memory alarm and a PostgreSQL restart overlapping.) A request for the same work waits on
    the uncommitted claim for as long as the publish takes (bounded: REQUEST_CONFIRM_TIMEOUT_S),
    and so does a worker releasing it, should the task end first (weather/claims.py).
    """
    if not connection.in_atomic_block:
        with transaction.atomic():
            enqueued = _claim(model, key, is_stale, savepoint=False)
            if not enqueued.deduplicated:
                publish(enqueued.task_id)
        return enqueued
    enqueued = _claim(model, key, is_stale)
    if enqueued.deduplicated:
        return enqueued

    def publish_or_release() -> None:
        try:
            publish(enqueued.task_id)
        except BrokerUnavailableError:
            # Nothing was queued: later requests must not join work that does not exist.
            model.objects.filter(task_id=enqueued.task_id).delete()
            raise

    transaction.on_commit(publish_or_release, robust=False)
    return enqueued


def _fetch_is_stale(pending: PendingFetch) -> bool:
    """The fetch has ended (a claim its worker could not release, the database away) or is presumed lost."""
    if pending.created_at < timezone.now() - PENDING_FETCH_TTL:
        return True
    return AsyncResult(pending.task_id).state in READY_STATES


@cache
def _fetch_at(priority: Priority) -> Task:
    """The Django fetch at a named priority, made (and validated) once per process."""
    return jobs.fetch_city.using(priority=django_priority(priority))


def enqueue_city_fetch(city_id: int, priority: Priority = Priority.API) -> Enqueued:
    """Fetch one city on the interactive lane, at most once at a time; returns the task id at once.

    The id is generated here so the caller can answer with it before the message
    is published (Celery's `delay_on_commit` returns nothing); inside a caller's
    transaction the message goes out when it commits, and not at all if it rolls back.
    """

    def publish(task_id: str) -> None:
        if settings.ENQUEUE_THROUGH == "django":
            # The backend publishes as a request does (weather/publishing.py), at once: the claim's moment.
            with enqueue_as(task_id, at_once=True):
                _fetch_at(priority).enqueue(city_id)
            return
        with publishing():
            ensure_publishing_allowed()
            fetch_weather_for_city.apply_async(
                args=[city_id], task_id=task_id, priority=int(priority),
                retry=True, retry_policy=request_publish_retry(), confirm_timeout=REQUEST_CONFIRM_TIMEOUT_S,
            )

    try:
        return _claim_and_publish(PendingFetch, {"city_id": city_id}, _fetch_is_stale, publish)
    except IntegrityError:
        raise UnknownCityError(f"city {city_id} does not exist") from None


def _summary_is_stale(run: DailySummaryRun) -> bool:
    """The day's chain has ended (its last step is ready) or is presumed lost."""
    if run.started_at < timezone.now() - DAILY_SUMMARY_TTL:
        return True
    return AsyncResult(run.task_id).state in READY_STATES


def enqueue_daily_summary(day: date) -> Enqueued:
    """Start extract -> transform -> load for a UTC day, or join the chain already running for it.

    Returns the id of the chain's last step, whose result is the chain's outcome; inside
    a caller's transaction the chain is published when it commits.
    """

    def publish(task_id: str) -> None:
        if settings.ENQUEUE_THROUGH == "django":
            # Django's Tasks API has no chains: one task runs the three steps.
            with enqueue_as(task_id, at_once=True):
                jobs.summarize_day.enqueue(day.isoformat())
            return
        workflow = chain(extract_data.s(day.isoformat()), transform_data.s(), load_data.s().set(task_id=task_id))
        with publishing():
            ensure_publishing_allowed()
            workflow.apply_async(retry=True, retry_policy=request_publish_retry(),
                                 confirm_timeout=REQUEST_CONFIRM_TIMEOUT_S)

    return _claim_and_publish(DailySummaryRun, {"day": day}, _summary_is_stale, publish)
