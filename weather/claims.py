"""Claim rows (one pending fetch per city, one summary per day): taken and released without missing each other."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from django.db import connection, transaction
from django.db.models import Model

from .patience import retried_until
from .storage import delete_rows

# The first of PostgreSQL's two advisory-lock keys: this module's; the second is the task id's hash.
CLAIM_LOCK_SPACE = 2605
LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, %s); "


def _lock(task_id: str) -> tuple[str, list[int]]:
    """The statement taking the task id's claim lock until the transaction ends, and its parameters.

    PostgreSQL only: SQLite lets one writer at a time, so a release waits for the claim anyway.
    """
    if connection.vendor != "postgresql":
        return "", []
    key = int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=4).digest(), "big", signed=True)
    return LOCK_SQL, [CLAIM_LOCK_SPACE, key]


def insert_unless_held(model: type[Model], key: dict[str, Any], task_id: str, savepoint: bool = True) -> bool:
    """Insert the claim row unless one holds the key already; True when this call inserted it.

    One round trip (INSERT ... ON CONFLICT DO NOTHING) when the key is free, which is
    nearly always. What the key names missing (a city) raises IntegrityError, but only at
    commit inside a caller's transaction (Django's foreign keys are deferred): callers check
    that it exists first. The same round trip takes the task id's claim lock, held until the
    claim commits: a worker that runs the task before that (the message is published inside
    the claim's transaction) waits for it in `release` instead of deleting nothing.
    """
    row = model(**key, task_id=task_id)
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields]
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in key)
    lock, lock_params = _lock(task_id)
    sql = (f"{lock}INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT ({conflict}) DO NOTHING RETURNING 1")
    # Inside a caller's transaction a failed insert must not abort it: a savepoint then.
    guard = transaction.atomic() if savepoint and connection.in_atomic_block else contextlib.nullcontext()
    with guard, connection.cursor() as cursor:
        cursor.execute(sql, [*lock_params, *values])
        return cursor.fetchone() is not None


def _release_once(model: type[Model], task_id: str) -> int:
    lock, lock_params = _lock(task_id)
    if not lock:
        return delete_rows(model, "task_id", task_id)
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field("task_id").column)
    # One round trip, two statements in one implicit transaction: the DELETE takes its
    # snapshot after the lock is granted, so it sees a claim that committed meanwhile.
    with connection.cursor() as cursor:
        cursor.execute(f"{lock}DELETE FROM {table} WHERE {column} = %s", [*lock_params, task_id])
        return cursor.rowcount


def release(model: type[Model], task_id: str, deadline: float) -> int:
    """Delete the claim held by `task_id` once the claim has committed; the rows deleted.

    A database away (restarting) is waited for until `deadline` (monotonic); then the
    error is raised, and the claim waits for its TTL or for the next request to find its
    task ended.
    """
    return retried_until(deadline, lambda: _release_once(model, task_id))
