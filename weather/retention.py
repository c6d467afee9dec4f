"""Retention cleanup in short, bounded transactions so it never blocks the writers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from .models import Effect, QuotaGrant, RateWindow, RefreshRun, TaskAttempt, WeatherData


def delete_in_batches(
    queryset: QuerySet,
    progress: dict,
    key: str,
    *,
    batch_size: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Delete the queryset's rows in primary-key ranges, one short transaction each.

    Walks the primary key upwards (keyset), so no batch scans again what earlier
    batches deleted, and adds each committed batch to `progress[key]`. Returns
    whether it finished; stopped early (`should_stop`), the next run deletes what
    remains, since nothing is kept in between but the rows themselves.
    """
    model: type[Model] = queryset.model
    progress.setdefault(key, 0)
    last_pk = None
    while not should_stop():
        window = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
        ids = list(window.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return True
        with transaction.atomic():
            # The range and the condition again: a row that stopped matching since
            # the select (a reading re-fetched) is left alone.
            _, by_model = queryset.filter(pk__gte=ids[0], pk__lte=ids[-1]).delete()
        last_pk = ids[-1]
        progress[key] += by_model.get(model._meta.label, 0)
    return False


def reading_cutoff(now: datetime | None = None) -> datetime:
    """Readings observed before this instant are past retention."""
    return (now or timezone.now()) - timedelta(days=settings.WEATHER_RETENTION_DAYS)


def cleanup(*, progress: dict | None = None, batch_size: int | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Delete expired readings, task results and quota grants, counting into `progress` as batches commit.

    A caller interrupted by a time limit still knows exactly what was deleted.
    """
    progress = {} if progress is None else progress
    batch_size = batch_size or settings.WEATHER_CLEANUP_BATCH_SIZE
    cutoff = reading_cutoff()
    progress.update(cutoff=cutoff.isoformat(), finished=False)
    now = timezone.now()
    tables = (
        ("readings_deleted", WeatherData.objects.filter(observed_at__lt=cutoff)),
        ("task_results_deleted", TaskResult.objects.filter(date_done__lt=now - settings.CELERY_RESULT_EXPIRES)),
        # Grants older than the longest quota window no longer count for anything.
        ("quota_grants_deleted", QuotaGrant.objects.filter(granted_at__lt=now - timedelta(days=2))),
        ("effects_deleted", Effect.objects.filter(
            recorded_at__lt=now - timedelta(days=settings.EFFECTS_RETENTION_DAYS))),
    )
    for key, queryset in tables:
        if not delete_in_batches(queryset, progress, key, batch_size=batch_size, should_stop=should_stop):
            return progress
    RateWindow.objects.filter(updated_at__lt=now - timedelta(days=1)).delete()
    # Crash counters explain dead letters; keep them as long as the readings.
    TaskAttempt.objects.filter(last_started_at__lt=cutoff).delete()
    runs = RefreshRun.objects.filter(started_at__lt=cutoff)
    progress["refresh_runs_deleted"] = runs.count()
    runs.delete()  # few rows a day; their batches go with them
    progress["finished"] = True
    return progress
