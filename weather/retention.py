"""Retention cleanup in short, bounded transactions so it never blocks the writers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from .models import QuotaGrant, RateCounter, RefreshRun, TaskAttempt, WeatherData

DELETE_BATCH = 5000


def delete_in_batches(
    queryset: QuerySet,
    *,
    batch_size: int = DELETE_BATCH,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[int, bool]:
    """Delete the queryset's rows by primary-key batches, one transaction each.

    Returns (rows deleted, finished). Stops between batches when `should_stop`
    says so; what remains is deleted by the next run, since nothing is kept in
    between but the rows themselves.
    """
    model: type[Model] = queryset.model
    deleted = 0
    while not should_stop():
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted, True
        with transaction.atomic():
            model._default_manager.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted, False


def reading_cutoff(now: datetime | None = None) -> datetime:
    """Readings observed before this instant are past retention."""
    return (now or timezone.now()) - timedelta(days=settings.WEATHER_RETENTION_DAYS)


def cleanup(*, progress: dict | None = None, batch_size: int = DELETE_BATCH,
            should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Delete expired readings, then expired task results, recording counts in `progress`.

    `progress` is filled as each table finishes, so a caller interrupted by a
    time limit still knows what was done.
    """
    progress = {} if progress is None else progress
    cutoff = reading_cutoff()
    progress.update(cutoff=cutoff.isoformat(), finished=False)
    readings, done = delete_in_batches(
        WeatherData.objects.filter(observed_at__lt=cutoff), batch_size=batch_size, should_stop=should_stop
    )
    progress["readings_deleted"] = readings
    if not done:
        return progress
    results_cutoff = timezone.now() - settings.CELERY_RESULT_EXPIRES
    results, done = delete_in_batches(
        TaskResult.objects.filter(date_done__lt=results_cutoff), batch_size=batch_size, should_stop=should_stop
    )
    progress["task_results_deleted"] = results
    if not done:
        return progress
    # Grants older than the longest quota window no longer count for anything.
    grants, done = delete_in_batches(
        QuotaGrant.objects.filter(granted_at__lt=timezone.now() - timedelta(days=2)),
        batch_size=batch_size, should_stop=should_stop,
    )
    progress["quota_grants_deleted"] = grants
    if not done:
        return progress
    RateCounter.objects.filter(window_start__lt=timezone.now() - timedelta(days=1)).delete()
    # Crash counters explain dead letters; keep them as long as the readings.
    TaskAttempt.objects.filter(last_started_at__lt=cutoff).delete()
    runs = RefreshRun.objects.filter(started_at__lt=cutoff)
    progress["refresh_runs_deleted"] = runs.count()
    runs.delete()  # few rows a day; their batches go with them
    progress["finished"] = True
    return progress
