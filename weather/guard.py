"""Crash safety for acks-late tasks: a message that keeps killing its worker goes to dead letters.

Acks late plus reject-on-worker-lost puts a message back on its queue when the
process running it dies, so no work is lost. A poison message would then crash
worker after worker forever. RabbitMQ's classic queues (needed for priorities)
have no delivery limit, so each start of a message is recorded; a message
started more than TASK_MAX_CRASHES times without finishing is rejected without
requeue, into the dead-letter exchange. Counting starts, not redeliveries,
keeps messages that were merely prefetched by a dying worker out of the count.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Task
from celery.exceptions import Reject
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

from .models import TaskAttempt


def record_start(task_id: str, task_name: str, lane: str) -> int:
    """Count one start of this message; returns how many times it has started unfinished."""
    attempt, created = TaskAttempt.objects.get_or_create(
        task_id=task_id, defaults={"task_name": task_name, "lane": lane, "starts": 1})
    if created:
        return 1
    TaskAttempt.objects.filter(pk=attempt.pk).update(starts=F("starts") + 1, last_started_at=timezone.now())
    return attempt.starts + 1


def record_end(task_id: str) -> None:
    """The message finished (success, failure or retry): forget its starts."""
    TaskAttempt.objects.filter(task_id=task_id).delete()


class CrashGuardedTask(Task):
    """Base of every task: counts starts, rejects a message that crashed its worker too often."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if not request.called_directly and self.acks_late and request.id:
            lane = (request.delivery_info or {}).get("routing_key") or ""
            try:
                starts = record_start(request.id, self.name, lane)
            except DatabaseError:
                starts = 1  # cannot count now: run it; the task itself retries database trouble
            crashes = starts - 1
            if crashes >= settings.TASK_MAX_CRASHES:
                raise Reject(f"{self.name}[{request.id}] crashed its worker {crashes} times", requeue=False)
        return super().__call__(*args, **kwargs)

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        """Forget the starts of a message that ran to an end."""
        # A row left behind is harmless; retention removes it.
        with contextlib.suppress(DatabaseError):
            record_end(task_id)
