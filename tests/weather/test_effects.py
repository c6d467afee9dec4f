"""The effects ledger: each write of a unit recorded with it, and a checker that fails when a unit is applied twice."""

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction

from tests.factories import make_city
from tools.harness import wait_for
from weather import effects, etl, refresh, storage
from weather.models import DailySummary, Effect, RefreshBatch, RefreshRun, WeatherData
from weather.refresh import BatchOf, BatchOutcome
from weather.services import Reading

pytestmark = pytest.mark.django_db(transaction=True)

OBSERVED = datetime(2026, 11, 30, 12, 15, tzinfo=UTC)


def test_the_same_slot_stored_twice_is_applied_once_and_discarded_once():
    city = make_city()
    assert refresh.store_readings([(city.pk, Reading(3.0, 80.0, 1010.0, OBSERVED))]) == {city.pk}
    assert refresh.store_readings([(city.pk, Reading(4.0, 81.0, 1011.0, OBSERVED))]) == set()
    assert WeatherData.objects.get(city=city).temperature == 4.0, "the later answer still rewrites the values"
    assert effects.tally() == [effects.KindTally("reading", units=1, applied=1, discarded=1, applied_twice=0)]
    assert effects.applied_twice() == {}
    assert Effect.objects.filter(applied=True).get().unit == f"{city.pk}@2026-11-30T12:15:00Z"


def test_a_broken_idempotency_key_shows_as_a_unit_applied_twice(monkeypatch):
    # Break the key once: store the row under the time it was fetched, not the provider's observation slot.
    # The unique constraint is satisfied (the rows differ), so counting rows per key sees nothing; the ledger,
    # keyed by the slot the provider reported, sees the same unit's effect committed twice.
    city = make_city()
    real_upsert = storage.upsert_readings
    shift = iter(range(1, 100))

    def keyed_by_fetch_time(readings):
        return real_upsert([(c, dataclasses.replace(r, observed_at=r.observed_at + timedelta(seconds=next(shift))))
                            for c, r in readings])

    monkeypatch.setattr(refresh, "upsert_readings", keyed_by_fetch_time)
    for _ in range(2):
        refresh.store_readings([(city.pk, Reading(3.0, 80.0, 1010.0, OBSERVED))])
    assert WeatherData.objects.filter(city=city).count() == 2
    assert effects.applied_twice() == {("reading", f"{city.pk}@2026-11-30T12:15:00Z"): 2}
    assert effects.tally()[0].applied_twice == 1


def test_work_rolled_back_leaves_no_ledger_row():
    city = make_city()

    def store_then_die() -> None:
        with transaction.atomic():
            refresh.store_readings([(city.pk, Reading(3.0, 80.0, 1010.0, OBSERVED))])
            raise RuntimeError("the worker died before its commit")

    with pytest.raises(RuntimeError):
        store_then_die()
    assert (WeatherData.objects.count(), Effect.objects.count()) == (0, 0)


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def _race(first_write: Callable[[], Any], second_write: Callable[[], Any]) -> tuple[Any, Any]:
    """Both writes' outcomes (an exception is an outcome): the second runs while the first's is uncommitted.

    The second is let go on only once PostgreSQL says it waits on a lock the first holds; then the first
    commits, and the database decides between them. No sleep, no read-then-write race left to chance.
    """
    first_done, release_first, second_done = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}
    second_pid: list[int] = []

    def first() -> None:
        try:
            with transaction.atomic():
                outcome["first"] = first_write()
                first_done.set()
                release_first.wait(30)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid.append(cursor.fetchone()[0])
            outcome["second"] = second_write()
        except Exception as error:  # the caller's assertions name it
            outcome["second"] = error
        finally:
            second_done.set()
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_done.wait(30)
    threads[1].start()
    try:
        wait_for(lambda: second_pid and _waiting_on_a_lock(second_pid[0]), timeout=30,
                 what="the second write to wait on the first one's row")
    finally:
        release_first.set()
        for thread in threads:
            thread.join(30)
    assert second_done.is_set()
    return outcome["first"], outcome["second"]


def test_two_copies_writing_the_same_slot_at_once_apply_it_once():
    # The first copy has inserted and not committed; the second blocks on its row, and once the first
    # commits the statement itself decides: nothing created, discarded. No read-then-write race to lose.
    city = make_city()
    outcome = _race(lambda: refresh.store_readings([(city.pk, Reading(3.0, 80.0, 1010.0, OBSERVED))]),
                    lambda: refresh.store_readings([(city.pk, Reading(3.5, 80.0, 1010.0, OBSERVED))]))
    assert outcome == ({city.pk}, set())
    assert effects.applied_twice() == {}
    assert sorted(Effect.objects.values_list("applied", flat=True)) == [False, True]


def test_a_batch_completed_by_a_second_copy_keeps_the_first_ones_figures():
    run = RefreshRun.objects.create(task_id="dispatch-1", batch_size=2, batches_total=1, cities_total=2)
    RefreshBatch.objects.create(run=run, index=0, cities=2)
    assert refresh.complete_batch(BatchOf(run.pk, 0, "bulk@one"), BatchOutcome(refreshed=2)) is True
    assert refresh.complete_batch(BatchOf(run.pk, 0, "bulk@two"), BatchOutcome(refreshed=1, failed={9: "x"})) is False
    batch = RefreshBatch.objects.get(run=run)
    assert (batch.refreshed, batch.failed, batch.worker) == (2, 0, "bulk@one")
    assert effects.tally() == [effects.KindTally("batch", units=1, applied=1, discarded=1, applied_twice=0)]


def test_a_dispatch_delivered_again_resumes_its_run_and_says_so():
    make_city()
    first, _ = refresh.start_or_resume_run("dispatch-2")
    again, _ = refresh.start_or_resume_run("dispatch-2")
    assert first.pk == again.pk
    assert list(Effect.objects.order_by("id").values_list("kind", "unit", "applied")) == [
        ("run", "dispatch-2", True), ("run", "dispatch-2", False)]


def test_the_etl_load_records_each_city_day_and_a_reload_rewrites_without_applying_again():
    city = make_city()
    day = date(2026, 11, 30)
    payload = {"day": day.isoformat(), "summaries": [[city.pk, 1.0, 5.0, 3.0, 4]]}
    etl.load(payload)
    etl.load({**payload, "summaries": [[city.pk, 1.0, 6.0, 3.5, 5]]})
    assert DailySummary.objects.get(city=city).max_temperature == 6.0
    assert effects.tally() == [effects.KindTally("summary", units=1, applied=1, discarded=1, applied_twice=0)]
    assert Effect.objects.filter(applied=True).get().unit == f"{city.pk}@2026-11-30"


def test_with_the_ledger_off_a_reading_is_one_statement_and_no_row(settings):
    settings.EFFECTS_LEDGER = False
    city = make_city()
    sent: list[str] = []

    def watch(execute, sql, params, many, context):
        sent.append(sql.split(None, 1)[0].upper())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert refresh.store_readings([(city.pk, Reading(3.0, 80.0, 1010.0, OBSERVED))]) == {city.pk}
    assert sent == ["INSERT"]
    assert (WeatherData.objects.count(), Effect.objects.count()) == (1, 0)


def test_outside_a_task_the_ledger_names_this_process():
    who = effects.execution()
    assert (who["task_id"], who["attempt"], who["delivery"]) == ("", 0, 1)
    assert who["pid"] > 0
    assert who["host"]


def test_two_copies_of_a_refresh_message_starting_at_once_make_one_run():
    # The first copy has created the run and not committed; the second looked before that, finds no run,
    # and its insert waits on the first one's row; then it finds the run its twin made (no error for the
    # dead letters) and leaves the batches to that twin.
    make_city()
    (run, batches), second = _race(lambda: refresh.start_or_resume_run("dispatch-twins"),
                                   lambda: refresh.start_or_resume_run("dispatch-twins"))
    assert isinstance(second, tuple), second
    assert len(second) == 2, second
    assert (second[0].pk, second[1]) == (run.pk, []), "the twin's run, nothing to send twice"
    assert len(batches) == 1
    assert RefreshRun.objects.count() == 1
    assert effects.applied_twice() == {}
