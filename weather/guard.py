"""Crash safety for acks-late tasks on classic lanes: a message that keeps killing its worker is dead-lettered.

Acks late plus reject-on-worker-lost puts a message back on its queue when the
process running it dies (or hits its hard time limit), so no work is lost. A
poison message would then crash worker after worker forever. Quorum lanes have
the broker count deliveries and dead-letter past a limit (routing.generations), so
nothing is recorded for them: on RabbitMQ 4 that is every lane. A classic queue
(the interactive lane on RabbitMQ 3.x, which needs priorities) has no delivery
limit, so there each start of a message is recorded; a message started more than
TASK_MAX_CRASHES times without ending is rejected without requeue, into the
dead-letter exchange. Counting starts, not redeliveries, keeps
messages that were merely prefetched by a dying worker out of the count. A retry
is a new message with the same id: starts are counted per try (the request's
retry number), so a retry is never mistaken for a crash of the try before it,
even when it starts before the old try has ended.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from celery import Task, states
from celery.exceptions import Ignore, Reject, Retry
from django.conf import settings
from django.db import Error, InterfaceError, OperationalError, connection
from django.utils import timezone

from routing import DELIVERY_LIMIT, deployed
from routing.routes import lane_of_message

from .backoff import broker_countdown, retry_delay
from .models import TaskAttempt
from .patience import retried_until, within_soft_limit
from .storage import delete_rows


def record_start(task_id: str, task_name: str, lane: str, retries: int = 0) -> int:
    """Count one start of this try of the message; returns how many times it has started without ending.

    One statement, one round trip, on every task's path: the first start inserts;
    another start of the same try adds one; the first start of a later try (a retry)
    begins its own count.
    """
    table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    now = TaskAttempt._meta.get_field("last_started_at").get_db_prep_value(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {table} (task_id, task_name, lane, retries, starts, last_started_at)
                VALUES (%s, %s, %s, %s, 1, %s)
                ON CONFLICT (task_id) DO UPDATE SET
                    starts = CASE WHEN {table}.retries = excluded.retries THEN {table}.starts + 1 ELSE 1 END,
                    retries = excluded.retries,
                    last_started_at = excluded.last_started_at
                RETURNING starts""",
            [task_id, task_name, lane, retries, now],
        )
        return int(cursor.fetchone()[0])


def delivery_count(request: Any) -> int:
    """How often a quorum queue has handed this message back (its x-delivery-count header; 0 at first)."""
    count = getattr(request, "x-delivery-count", None)
    if count is None:
        count = (getattr(request, "headers", None) or {}).get("x-delivery-count", 0)
    return int(count) if isinstance(count, int) else 0


def record_end(task_id: str) -> None:
    """The message ended (success, failure or retry): forget its starts."""
    delete_rows(TaskAttempt, "task_id", task_id)


# How long a task's ending keeps trying to release what its message held (its counted starts, a
# city's claim) while the database is away, within half its pool's soft limit: a row left behind
# would count a crash that never happened, or hold the city until its claim expires.
RELEASE_PATIENCE_S = 15.0
# How long a declined task whose ending could not be recorded waits before it runs once more.
UNRECORDED_RETRY_S = 5.0
# Tries a task gets when the database is away where its body does not retry by itself: from the
# backoff's base (WEATHER_RETRY_BASE_SECONDS, 2 s) they span about six minutes, a restart or a failover.
DATABASE_AWAY_RETRIES = 8


class CrashLoopError(RuntimeError):
    """A message cut its worker short on every delivery it was allowed: dead-lettered, not run again."""


class CrashGuardedTask(Task):
    """Base of every task: counts starts, rejects a message that crashed its worker too often."""

    @property
    def lane(self) -> str:
        """The lane the running message came from (routing.routes.lane_of_message)."""
        return lane_of_message(self.name, self.request.delivery_info)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if not request.called_directly and self.acks_late and request.id:
            lane = self.lane
            if lane in deployed().quorum_lane_names:
                # The quorum queue counts returns; on the last delivery it allows, say why
                # and release what the message holds, rather than let the broker drop it silently.
                crashes, limit = delivery_count(request), DELIVERY_LIMIT
            else:
                try:
                    crashes = record_start(request.id, self.name, lane, request.retries or 0) - 1
                except Error:
                    crashes = 0  # cannot count now: run it; the task itself retries database trouble
                limit = settings.TASK_MAX_CRASHES
            if crashes >= limit:
                self.on_crash_limit(request.id, args, kwargs)
                reason = f"crashed its worker {crashes} times (worker lost or killed mid-task, or its hard time limit)"
                if not self.ignore_result:
                    # Whoever polls the task id sees it failed and why, not STARTED forever.
                    with contextlib.suppress(Error):
                        self.backend.mark_as_failure(request.id, CrashLoopError(reason), request=request)
                raise Reject(f"{self.name}[{request.id}] {reason}", requeue=False)
        try:
            return super().__call__(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if request.called_directly:
                raise
            # The database away where the body does not handle it (a refresh's start, an ETL step, the
            # cleanup): a passing fault like a provider 5xx. Failing would dead-letter the message, its
            # ending unrecordable too (found by the nemesis: a restart dead-lettered refreshes and summaries).
            raise self._retry_database(exc) from exc

    def _retry_database(self, exc: Exception) -> Retry:
        """Retry with backoff, for up to DATABASE_AWAY_RETRIES tries; past them `exc` itself is raised."""
        delay = retry_delay(self.request.retries or 0, settings.WEATHER_RETRY_BASE_SECONDS)
        return self.retry(exc=exc, countdown=broker_countdown(delay, self.lane),
                          max_retries=max(self.max_retries or 0, DATABASE_AWAY_RETRIES))

    def decline(self, exc: Exception) -> Ignore | Retry:
        """End the running task as FAILURE with `exc` and acknowledge it, rather than dead-letter it.

        For an ending the caller has had as its answer and can act on (the provider quota
        used up until a time the result states, a passing provider fault that outlasted
        the retries): nothing for a person to inspect or replay. Raise what it returns.
        Celery skips after_return for an ignored task, so it is called here: what the
        message holds is released as for any ending. An ending the result backend cannot
        record now is not acknowledged: the task runs once more a little later.
        """
        request = self.request
        try:
            self.backend.mark_as_failure(request.id, exc, request=request)
        except Error:
            # The ending cannot be recorded now (the database is away): acknowledged, the task would
            # stay RETRY for whoever follows it. Try once more later instead (found by the nemesis).
            return self.retry(exc=exc, countdown=broker_countdown(UNRECORDED_RETRY_S, self.lane),
                              max_retries=(request.retries or 0) + 1, throw=False)
        self.after_return(states.FAILURE, exc, request.id, tuple(request.args or ()), dict(request.kwargs or {}),
                          None)
        return Ignore()

    def on_crash_limit(self, task_id: str, args: tuple, kwargs: dict) -> None:
        """Called just before a poison message is dead-lettered: release what it holds.

        Its TaskAttempt row stays: `deadletters list` reads the crash count from it.
        """

    def release_deadline(self) -> float:
        """Until when (monotonic) the ending may wait for the database to release what the message held."""
        return time.monotonic() + within_soft_limit(RELEASE_PATIENCE_S, self.app.conf.task_soft_time_limit)

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        """Release what a message that ran to an end held (Celery skips this for a retry)."""
        self.release_held(task_id, self.release_deadline())

    def release_held(self, task_id: str, deadline: float) -> None:
        """Forget the message's counted starts, waiting for the database until `deadline`."""
        if self.lane in deployed().quorum_lane_names:
            return  # nothing was counted: the broker counts deliveries there
        # Past the deadline the row stays: retention removes it.
        with contextlib.suppress(Error):
            retried_until(deadline, lambda: record_end(task_id))
