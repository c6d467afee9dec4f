"""Refreshing readings: one city for a person, or a batch of cities for the periodic refresh."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import effects, quota
from .models import City, Effect, RefreshBatch, RefreshRun
from .quota import Consumer
from .services import InvalidReadingError, Location, Reading, TransientProviderError, WeatherService
from .storage import upsert_readings

# How long every worker stays away after a 429 that gave no Retry-After.
DEFAULT_RATE_LIMIT_PAUSE_S = 60.0
# A deferred batch is an ETA message the worker holds unacknowledged; keep each
# wait well below RabbitMQ's 30-minute consumer timeout and check again after it.
MAX_QUOTA_DEFERRAL_S = 600.0
# Runs waiting ahead of a deferred batch that each put it a second later; beyond, all come back together.
MAX_OLDER_RUNS_AHEAD = 30


class UnknownCityError(LookupError):
    """No city has this id."""


@functools.lru_cache(maxsize=1)
def weather_service() -> WeatherService:
    """One client (and one pooled HTTP session) per process."""
    return WeatherService()


def _location(city: City) -> Location:
    return Location(latitude=city.latitude, longitude=city.longitude)


def _ask_provider(locations: list[Location], consumer: Consumer) -> list[Reading | InvalidReadingError]:
    """Reserve quota for the locations, then make the one request; a 429 pauses every worker."""
    quota.reserve(len(locations), consumer)
    try:
        return weather_service().get_current_many(locations)
    except TransientProviderError as error:
        if error.status == 429:
            quota.pause_provider(error.retry_after or DEFAULT_RATE_LIMIT_PAUSE_S)
        raise


def refresh_city(city_id: int) -> dict:
    """Fetch and store the current reading of one city; returns what was stored."""
    city = City.objects.filter(pk=city_id).only("id", "latitude", "longitude").first()
    if city is None:
        raise UnknownCityError(f"city {city_id} does not exist")
    (reading,) = _ask_provider([_location(city)], Consumer.INTERACTIVE)
    if isinstance(reading, InvalidReadingError):
        raise reading
    store_readings([(city.pk, reading)])
    return {
        "city_id": city.pk,
        "temperature": reading.temperature,
        "humidity": reading.humidity,
        "pressure": reading.pressure,
        "observed_at": reading.observed_at.isoformat(),
    }


@dataclass
class BatchOutcome:
    """What one batch request stored and which cities it could not."""

    refreshed: int = 0
    failed: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchOf:
    """The refresh batch a request belongs to, and the worker running it."""

    run_id: int
    index: int
    worker: str = ""


def refresh_batch(city_ids: Sequence[int], batch: BatchOf | None = None) -> BatchOutcome:
    """One provider request for all these cities and one bulk upsert of their readings.

    With its batch, the readings and the batch's completion commit together: one
    transaction (one commit to wait for) where the ledger's rows of both go too.
    """
    cities = list(City.objects.filter(pk__in=city_ids).only("id", "latitude", "longitude").order_by("pk"))
    outcome = BatchOutcome()
    found = {city.pk for city in cities}
    for missing in set(city_ids) - found:
        outcome.failed[missing] = "city no longer exists"
    good: list[tuple[int, Reading]] = []
    if cities:
        results = _ask_provider([_location(city) for city in cities], Consumer.BULK)
        for city, result in zip(cities, results, strict=True):
            if isinstance(result, InvalidReadingError):
                outcome.failed[city.pk] = str(result)
            else:
                good.append((city.pk, result))
    outcome.refreshed = len(good)
    with effects.shared_transaction():
        _store(good)
        if batch is not None:
            _complete(batch, outcome)
    return outcome


def store_readings(readings: list[tuple[int, Reading]]) -> set[int]:
    """Upsert the readings and, in the same transaction, a ledger row for each: the cities whose slot was new."""
    with effects.shared_transaction():
        return _store(readings)


def _store(readings: list[tuple[int, Reading]]) -> set[int]:
    created = upsert_readings(readings)
    effects.record(Effect.Kind.READING, [(effects.reading_unit(city_id, reading.observed_at), city_id in created)
                                         for city_id, reading in readings])
    return created


def batch_done(run_id: int, index: int) -> bool:
    """Whether this batch already reached done: a copy of it delivered again has nothing left to do."""
    return RefreshBatch.objects.filter(run_id=run_id, index=index, status=RefreshBatch.Status.DONE).exists()


def skip_done_batch(run_id: int, index: int) -> None:
    """Record a delivery of a batch that was already done as discarded, without asking the provider again."""
    effects.record(Effect.Kind.BATCH, [(effects.batch_unit(run_id, index), False)])


def complete_batch(batch: BatchOf, outcome: BatchOutcome) -> bool:
    """Mark the batch done with its outcome, and record it in the ledger; whether this execution was the one."""
    with effects.shared_transaction():
        return _complete(batch, outcome)


def _complete(batch: BatchOf, outcome: BatchOutcome) -> bool:
    """Only a batch not done yet changes: a copy of it finishing second (delivered again while the
    first was cut off or paused) is recorded as discarded and leaves the first one's figures."""
    changed = RefreshBatch.objects.filter(run_id=batch.run_id, index=batch.index).exclude(
        status=RefreshBatch.Status.DONE).update(
        status=RefreshBatch.Status.DONE,
        refreshed=outcome.refreshed,
        failed=len(outcome.failed),
        error="; ".join(f"{city}: {why}" for city, why in list(outcome.failed.items())[:5]),
        finished_at=timezone.now(),
        worker=batch.worker,
    )
    effects.record(Effect.Kind.BATCH, [(effects.batch_unit(batch.run_id, batch.index), changed == 1)])
    return changed == 1


def active_city_batches(batch_size: int | None = None) -> Iterator[list[int]]:
    """Ids of the active cities, in provider-sized batches, in primary-key order."""
    size = batch_size or settings.WEATHER_BATCH_SIZE
    ids = City.objects.active().order_by("pk").values_list("pk", flat=True)
    batch: list[int] = []
    for city_id in ids.iterator(chunk_size=5000):
        batch.append(city_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def start_or_resume_run(task_id: str | None, slot: str | None = None,
                        ) -> tuple[RefreshRun, list[tuple[int, list[int]]]]:
    """The refresh run of this dispatch message, with the batches still to send, as (index, city ids).

    Idempotent per message: a redelivered dispatch (its worker died midway) finds
    its run by task id and gets only the batches not done yet; a batch sent twice
    is harmless, since storing readings is an upsert. Idempotent per periodic slot:
    another message for a slot that has its run (a beat resumed after a pause sent
    it again) gets that run and nothing to send.
    """
    unit = slot or task_id or ""
    run = RefreshRun.objects.filter(task_id=task_id).first() if task_id else None
    if run is not None:
        effects.record(Effect.Kind.RUN, [(unit, False)])
        indexes = set(run.batches.filter(status=RefreshBatch.Status.PENDING).values_list("index", flat=True))
        return run, [(i, batch) for i, batch in enumerate(active_city_batches(run.batch_size)) if i in indexes]
    twin = RefreshRun.objects.filter(slot=slot).first() if slot else None
    if twin is not None:
        effects.record(Effect.Kind.RUN, [(unit, False)])
        return twin, []
    batch_size = settings.WEATHER_BATCH_SIZE
    batches = list(active_city_batches(batch_size))
    try:
        with transaction.atomic():
            run = RefreshRun.objects.create(task_id=task_id, slot=slot, batch_size=batch_size,
                                            batches_total=len(batches),
                                            cities_total=sum(len(batch) for batch in batches))
            RefreshBatch.objects.bulk_create(
                RefreshBatch(run=run, index=index, cities=len(batch)) for index, batch in enumerate(batches))
            effects.record(Effect.Kind.RUN, [(unit or f"run {run.pk}", True)])
    except IntegrityError:
        # A twin created the run between our look and our insert: another copy of this message (a
        # redelivery racing the first delivery, found by the nemesis) or another message for the slot.
        # The twin sends the batches; a twin that dies first is redelivered and resumes them.
        twin = ((RefreshRun.objects.filter(task_id=task_id).first() if task_id else None)
                or (RefreshRun.objects.filter(slot=slot).first() if slot else None))
        if twin is None:
            raise
        effects.record(Effect.Kind.RUN, [(unit, False)])
        return twin, []
    return run, list(enumerate(batches))


def quota_deferral(run_id: int, index: int, cities: int, exc: quota.QuotaExceededError) -> float | None:
    """Seconds until a batch refused for quota should try again (oldest run first); None when it should not.

    None when its run was deleted, or when quota returns only after the run's
    deadline (the batch is then marked failed: the next scheduled run covers it).
    """
    started = RefreshRun.objects.filter(pk=run_id).values_list("started_at", flat=True).first()
    if started is None:
        return None  # the run was deleted: nothing is waiting for this batch
    deadline = started + timedelta(seconds=settings.WEATHER_REFRESH_DEADLINE_SECONDS)
    if exc.retry_at > deadline:
        RefreshBatch.objects.filter(run_id=run_id, index=index, status=RefreshBatch.Status.PENDING).update(
            status=RefreshBatch.Status.FAILED, failed=cities,
            error=f"quota exhausted until after the run's deadline: {exc}"[:500], finished_at=timezone.now())
        return None
    # Oldest first: each run with batches still waiting that started before this one puts it a
    # second further back (the broker holds delays in whole seconds), so when quota returns the
    # oldest run's batches take it, rather than whichever of the herd of deferrals comes first.
    older_waiting = (RefreshRun.objects.filter(started_at__lt=started, batches__status=RefreshBatch.Status.PENDING)
                     .distinct().count())
    return min(exc.wait_seconds() + min(older_waiting, MAX_OLDER_RUNS_AHEAD), MAX_QUOTA_DEFERRAL_S)
