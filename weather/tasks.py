"""Celery tasks: thin wrappers that call the services and decide what to retry."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import QuerySet
from django.utils import timezone

from routing.broker import BrokerUnavailableError, ensure_publishing_allowed, stop_retrying_if_unconfirmed
from workers.pools import NEAR_LIMIT_SHARE

from . import claims, etl, retention
from .backoff import broker_countdown, retry_delay
from .guard import CrashGuardedTask
from .models import PendingFetch, RefreshBatch
from .publishing import REQUEST_CONFIRM_TIMEOUT_S, request_publish_retry
from .quota import QuotaExceededError
from .refresh import (
    BatchOf,
    batch_done,
    quota_deferral,
    refresh_batch,
    refresh_city,
    skip_done_batch,
    start_or_resume_run,
)
from .schedules import SLOT_HEADER
from .services import TransientProviderError

# A database that restarts or fails over is a passing fault, like a provider 5xx.
RETRYABLE = (TransientProviderError, OperationalError, InterfaceError)
# Tries after the first for a fetch (and any Django task) that meets a passing fault.
PASSING_FAULT_RETRIES = 3

T = TypeVar("T")


def _retry(task, exc: Exception, delay: float | None = None, **publish: Any):
    if delay is None:
        hint = getattr(exc, "retry_after", None)
        delay = retry_delay(task.request.retries, settings.WEATHER_RETRY_BASE_SECONDS, hint)
    return task.retry(exc=exc, countdown=broker_countdown(delay, task.lane), **publish)


def _retry_or_decline(task, exc: Exception, delay: float | None = None):
    """A person's fetch retried, its publish bounded as a request's is; declined, saying why, when it cannot be.

    A broker blocking publishers (a memory or disk alarm) never confirms: waiting would spend
    the interactive soft limit, and Celery rejects a message whose retry it could not publish
    to the dead letters (found by the nemesis: a click whose retry waited out an alarm). A
    batch waits instead (its soft limit is long, and nobody is waiting for an answer).

    Never sent again after a confirm that did not come: the broker may still take the first
    copy when the alarm clears (the retry then runs as well, its effect applied once), and a
    second copy of the same try would be counted as a crash of it. A broken connection is
    reconnected and the retry sent, as a request's publish is. `delay`: when quota returns, for
    a retry that waits for it; else the backoff's.
    """
    try:
        ensure_publishing_allowed()
        policy = {**request_publish_retry(), "errback": stop_retrying_if_unconfirmed}
        return _retry(task, exc, delay, retry_policy=policy, confirm_timeout=REQUEST_CONFIRM_TIMEOUT_S)
    except (BrokerUnavailableError, Reject) as unsent:
        reason = unsent.reason if isinstance(unsent, Reject) else unsent
        unqueued = BrokerUnavailableError(f"{exc}; its retry could not be queued ({reason}): ask again")
        raise task.decline(unqueued) from exc


class CityFetchTask(CrashGuardedTask):
    """Releases the city's pending-fetch slot once the fetch has ended for good."""

    def release_held(self, task_id: str, deadline: float) -> None:
        super().release_held(task_id, deadline)
        _release_fetch_slot(task_id, deadline)

    def on_crash_limit(self, task_id: str, args: tuple, kwargs: dict) -> None:
        super().on_crash_limit(task_id, args, kwargs)
        _release_fetch_slot(task_id, self.release_deadline())


def _release_fetch_slot(task_id: str, deadline: float) -> None:
    # Celery calls after_return for every ending but a retry, which keeps the slot. A database
    # away past the deadline leaves the slot: the next request for the city finds its fetch
    # ended and replaces it (weather/dispatch.py), else it expires after the TTL.
    with contextlib.suppress(OperationalError, InterfaceError):
        claims.release(PendingFetch, task_id, deadline)


def run_with_retries(task: CrashGuardedTask, call: Callable[[], T]) -> T:
    """Run `call` as a person's request is run: passing faults retried with backoff, then declined.

    The interactive policy, shared by the fetch and by every task enqueued through Django's
    Tasks API (weather/lanetasks/runner.py). Quota that returns within seconds is waited
    for; later than that, the caller reads when it returns as the result.
    """
    try:
        return call()
    except RETRYABLE as exc:
        if task.request.retries >= task.max_retries:
            # A passing fault outlasted the retries: the person is told, and can ask again; an
            # operator has nothing to replay. (A click that can never succeed is dead-lettered.)
            raise task.decline(exc) from exc
        raise _retry_or_decline(task, exc) from exc
    except QuotaExceededError as exc:
        wait = exc.wait_seconds()
        if wait <= settings.WEATHER_INTERACTIVE_QUOTA_WAIT_SECONDS and task.request.retries < task.max_retries:
            raise _retry_or_decline(task, exc, delay=wait) from exc
        # The person reads "quota returns at HH:MM" as the result: nothing to replay later.
        raise task.decline(exc) from exc


@shared_task(bind=True, base=CityFetchTask, max_retries=PASSING_FAULT_RETRIES)
def fetch_weather_for_city(self, city_id: int) -> dict:
    """Fetch and store one city's current weather (interactive lane)."""
    return run_with_retries(self, lambda: refresh_city(int(city_id)))


@shared_task(bind=True)
def update_all_weather_data(self) -> dict:
    """Fan the refresh of every active city out as one bulk task per provider batch.

    Idempotent per message: a redelivered dispatch (its worker died midway) finds
    its run by task id and sends again only the batches not done yet; a batch
    sent twice is harmless, since storing readings is an upsert.
    """
    # Sent by the beat, the message names its periodic slot: one run a slot, however often it is sent.
    run, pending = start_or_resume_run(self.request.id, getattr(self.request, SLOT_HEADER, None))
    for index, batch in pending:
        refresh_weather_batch.apply_async(args=[run.pk, index, batch])
    return run.summary()


# Results ignored: thousands of batches a run report through their RefreshBatch rows,
# which is also where `deadletters list` reads why a batch died. (Storing errors in
# the result backend too would make every retry during a database outage fail.)
# Ten retries: at 30 % of provider answers failing, six tries left one batch in
# about 1,400 failed; eleven leave one in half a million. With the backoff capped at
# MAX_DELAY_S they still end well inside the refresh interval.
class BatchTask(CrashGuardedTask):
    """A batch cut short too often ends failed, saying why, so its run can finish."""

    def on_crash_limit(self, task_id: str, args: tuple, kwargs: dict) -> None:
        super().on_crash_limit(task_id, args, kwargs)
        run_id, index, city_ids = [*args, None, None, []][:3]
        _mark_failed(RefreshBatch.objects.filter(run_id=run_id, index=index), len(city_ids or []),
                     RuntimeError("crashed its worker on every delivery (worker lost or killed mid-batch, or its "
                                  "hard time limit): dead-lettered"), self.request.hostname)


@shared_task(bind=True, base=BatchTask, max_retries=10, ignore_result=True)
def refresh_weather_batch(self, run_id: int, index: int, city_ids: list[int]) -> None:
    """One provider request and one bulk upsert for a batch of cities (bulk lane)."""
    batch = RefreshBatch.objects.filter(run_id=run_id, index=index)
    try:
        if batch_done(run_id, index):
            skip_done_batch(run_id, index)  # delivered again after a copy of it finished: spare the quota
            return
        refresh_batch(city_ids, BatchOf(run_id, index, self.request.hostname or ""))
    except QuotaExceededError as exc:
        _defer_for_quota(run_id, index, city_ids, exc)
    except RETRYABLE as exc:
        if self.request.retries >= self.max_retries:
            _mark_failed(batch, len(city_ids), exc, self.request.hostname)
        raise _retry(self, exc) from exc
    except Exception as exc:
        _mark_failed(batch, len(city_ids), exc, self.request.hostname)
        raise


def _mark_failed(batch: QuerySet, cities: int, exc: Exception, worker: str | None) -> None:
    """Record a batch that failed for good; the database may be what failed, so never raise.

    Only a batch still pending: a copy of it that another host already completed (the
    message was redelivered while this one was cut off) stays done.
    """
    with contextlib.suppress(OperationalError, InterfaceError):
        batch.filter(status=RefreshBatch.Status.PENDING).update(
            status=RefreshBatch.Status.FAILED, failed=cities, error=str(exc)[:500], finished_at=timezone.now(),
            worker=worker or "")


def _defer_for_quota(run_id: int, index: int, city_ids: list[int], exc: QuotaExceededError) -> None:
    """Send the batch again for when quota returns, unless its run will be stale by then.

    A new message rather than a retry: waiting for quota is not a failure and
    must not use up the batch's retries for real provider errors.
    """
    countdown = quota_deferral(run_id, index, len(city_ids), exc)
    if countdown is not None:
        refresh_weather_batch.apply_async(args=[run_id, index, city_ids],
                                          countdown=broker_countdown(countdown, refresh_weather_batch.lane))


# Share of the soft time limit the cleanup spends before it stops starting batches,
# leaving the rest for the batch in flight to commit: below the share doctor calls
# close to the limit, since a cleanup that paces itself through a backlog is not a warning.
CLEANUP_TIME_SHARE = NEAR_LIMIT_SHARE * 0.9


@shared_task(bind=True)
def cleanup_old_weather_data(self) -> dict:
    """Delete readings past retention and expired task results (maintenance lane)."""
    progress: dict = {}
    soft_limit = self.app.conf.task_soft_time_limit  # the pool's, set from the registry
    started = time.monotonic()

    def out_of_time() -> bool:
        return bool(soft_limit) and time.monotonic() - started > soft_limit * CLEANUP_TIME_SHARE

    # Either way the next run continues from what is left: nothing but the rows is kept.
    try:
        retention.cleanup(progress=progress, should_stop=out_of_time)
    except SoftTimeLimitExceeded:
        # The backstop: only the batch in flight rolls back; committed batches stay deleted.
        progress.update(finished=False, stopped="soft time limit")
    if not progress["finished"] and "stopped" not in progress:
        progress["stopped"] = "time budget"
    return progress


@shared_task
def extract_data(day: str | None = None) -> dict:
    """ETL step 1: the day's per-city temperature aggregates."""
    return etl.extract(day)


@shared_task
def transform_data(payload: dict) -> dict:
    """ETL step 2: per-city statistics."""
    return etl.transform(payload)


@shared_task
def load_data(payload: dict) -> dict:
    """ETL step 3: upsert the daily summaries."""
    return etl.load(payload)
