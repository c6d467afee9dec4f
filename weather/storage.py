"""Idempotent writes: the same observation stored twice is one row, in one statement and one round trip."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from .adapters.django_orm import insert_or_update
from .models import WeatherData
from .services import Reading

UPSERT_CHUNK = 1000


def delete_rows(model: type[Model], field: str, value: object) -> int:
    """DELETE FROM the model's table WHERE field = value: one statement, one round trip; returns the rows deleted.

    QuerySet.delete() wraps even a one-table delete in a transaction of its own
    (BEGIN and COMMIT: three round trips), since it may have to cascade. For a model
    no other row references there is nothing to cascade, and the statement alone is atomic.
    """
    if model._meta.related_objects:
        raise ValueError(f"{model.__name__} is referenced by other models: delete it with QuerySet.delete()")
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field(field).column)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} = %s", [value])
        return cursor.rowcount


def upsert(rows: Sequence[Model], unique_fields: Sequence[str], update_fields: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (unique_fields) DO UPDATE SET update_fields: one statement per UPSERT_CHUNK rows.

    QuerySet.bulk_create(update_conflicts=True) sends the same statement, inside a
    transaction of its own: BEGIN and COMMIT make it three round trips. One statement
    is atomic by itself; a write cut between two chunks is repaired by writing again.
    """
    if not rows:
        return
    model = type(rows[0])
    opts = model._meta
    fields = [f for f in opts.concrete_fields if not f.generated and not f.primary_key]
    for start in range(0, len(rows), UPSERT_CHUNK):
        insert_or_update(model, rows[start:start + UPSERT_CHUNK], fields=fields,
                         update_fields=[opts.get_field(name) for name in update_fields],
                         unique_fields=[opts.get_field(name) for name in unique_fields])


def insert_missing(rows: Sequence[Model], unique_fields: Sequence[str], returning: str) -> set[int]:
    """INSERT ... ON CONFLICT (unique_fields) DO NOTHING: the `returning` column's values of the rows it created.

    What the ledger needs to tell a first write from a repeated one, decided by the
    statement itself: a concurrent copy waits on the first one's row and creates nothing.
    `returning` names an integer column whose values are distinct among `rows`.
    """
    if not rows:
        return set()
    opts = type(rows[0])._meta
    quote = connection.ops.quote_name
    fields = [f for f in opts.concrete_fields if not f.generated and not f.primary_key]
    columns = ", ".join(quote(f.column) for f in fields)
    keys = ", ".join(quote(opts.get_field(name).column) for name in unique_fields)
    created: set[int] = set()
    for start in range(0, len(rows), UPSERT_CHUNK):
        chunk = rows[start:start + UPSERT_CHUNK]
        values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(chunk))
        params = [f.get_db_prep_save(getattr(row, f.attname), connection) for row in chunk for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {quote(opts.db_table)} ({columns}) VALUES {values} "
                           f"ON CONFLICT ({keys}) DO NOTHING RETURNING {quote(opts.get_field(returning).column)}",
                           params)
            created.update(int(value) for (value,) in cursor.fetchall())
    return created


def upsert_readings(readings: Iterable[tuple[int, Reading]]) -> set[int]:
    """Insert or update one row per (city, observation), at most one per city; the cities whose observation was new.

    Call it inside a transaction: the new rows go in first, then the rest are rewritten.
    """
    now = timezone.now()
    rows = [
        WeatherData(
            city_id=city_id,
            temperature=reading.temperature,
            humidity=reading.humidity,
            pressure=reading.pressure,
            observed_at=reading.observed_at,
            fetched_at=now,
        )
        for city_id, reading in readings
    ]
    created = insert_missing(rows, unique_fields=["city", "observed_at"], returning="city")
    upsert([row for row in rows if row.city_id not in created], unique_fields=["city", "observed_at"],
           update_fields=["temperature", "humidity", "pressure", "fetched_at"])
    return created
