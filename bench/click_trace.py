"""Spans and database round trips of each request and task, recorded inside the web server and the workers.

Loaded only by bench/click_profile.py, through a sitecustomize it puts on the
PYTHONPATH of the processes it starts: every web request and every task writes one
JSON line to CLICK_TRACE_DIR/<pid>.jsonl with its wall-clock start, its duration,
and per step (a named function of the click's path) the time spent inside it and
the database round trips made while it was the innermost step.

A round trip is counted where psycopg2 makes one: each statement, the BEGIN it
sends before the first statement of a transaction, each COMMIT or ROLLBACK of a
transaction that ran something, and each usability check (CONN_HEALTH_CHECKS).
Opening a connection is counted apart (`connects`): it is several round trips.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

OTHER = "(outside the named steps)"

# The click's steps in the order they run, with their nesting depth.
REFRESH_FLOW = "refresh flow: city lookup, then"
RATE_LIMIT = "rate limit"
ENQUEUE = "enqueue: claim, then publish"
CLAIM = "claim the pending fetch"
FLOW_CONTROL = "publish: flow-control check"
PUBLISH = "publish with confirm"
STORE = "result backend: store {}"
STORE_STARTED = STORE.format("STARTED")
GUARD_START = "crash guard: count the start"
REFRESH_CITY = "refresh_city: city lookup, then"
QUOTA = "quota: reserve"
PROVIDER = "provider request"
UPSERT = "store the reading (upsert)"
STORE_SUCCESS = STORE.format("SUCCESS")
GUARD_END = "crash guard: forget the starts"
RELEASE_SLOT = "release the pending-fetch slot"
DESCRIBE = "status: describe the task"
READ_STATE = "result backend: read the state"
POLL_STEPS = ((DESCRIBE, 0), (READ_STATE, 1), (OTHER, 0))
WEB_STEPS = ((REFRESH_FLOW, 0), (RATE_LIMIT, 1), (ENQUEUE, 1), (CLAIM, 2), (FLOW_CONTROL, 2), (PUBLISH, 2),
             (OTHER, 0))
TASK_STEPS = ((STORE_STARTED, 0), (GUARD_START, 0), (REFRESH_CITY, 0), (QUOTA, 1), (PROVIDER, 1), (UPSERT, 1),
              (STORE_SUCCESS, 0), (GUARD_END, 0), (RELEASE_SLOT, 0), (OTHER, 0))
_local = threading.local()
_armed_django = False


class _Record:
    """One request or one task: when it started, its steps, and what it saw (task id, publish, SUCCESS stored)."""

    def __init__(self, kind: str, **fields: Any) -> None:
        self.fields: dict[str, Any] = {"kind": kind, "t0": time.time(), **fields}
        self.started = time.perf_counter()
        self.stack: list[str] = []
        self.steps: dict[str, list[float]] = {}
        self.connects = 0

    def add(self, step: str, ms: float = 0.0, round_trips: int = 0) -> None:
        entry = self.steps.setdefault(step, [0.0, 0])
        entry[0] += ms
        entry[1] += round_trips

    def write(self) -> None:
        line = {**self.fields, "ms": (time.perf_counter() - self.started) * 1000, "connects": self.connects,
                "steps": {name: {"ms": ms, "round_trips": rt} for name, (ms, rt) in self.steps.items()}}
        path = os.path.join(os.environ["CLICK_TRACE_DIR"], f"{os.getpid()}.jsonl")
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\n")


def _current() -> _Record | None:
    return getattr(_local, "record", None)


def _round_trips(count: int) -> None:
    record = _current()
    if record is not None:
        record.add(record.stack[-1] if record.stack else OTHER, round_trips=count)


@contextmanager
def span(name: str) -> Iterator[None]:
    """Time the block as step `name`; round trips inside it count for it unless a nested step claims them."""
    record = _current()
    if record is None:
        yield
        return
    record.stack.append(name)
    started = time.perf_counter()
    try:
        yield
    finally:
        record.stack.pop()
        record.add(name, (time.perf_counter() - started) * 1000)


def _wrap(owner: Any, attribute: str, name: str | Callable[..., str],
          after: Callable[[_Record, tuple], None] | None = None, before: Callable[[_Record], None] | None = None,
          ) -> None:
    """Replace owner.attribute with a version that runs as a step (`name` may depend on the arguments)."""
    original = getattr(owner, attribute)
    if getattr(original, "_click_traced", False):
        return

    @functools.wraps(original)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if before is not None and _current() is not None:
            before(_current())
        with span(name(*args, **kwargs) if callable(name) else name):
            result = original(*args, **kwargs)
        record = _current()
        if after is not None and record is not None:
            after(record, (args, kwargs, result))
        return result

    traced._click_traced = True  # type: ignore[attr-defined]
    setattr(owner, attribute, traced)


def _count_queries(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    connection = context["connection"]
    raw = connection.connection
    begins = 0
    if raw is not None and not connection.get_autocommit():
        import psycopg2.extensions

        # psycopg2 sends BEGIN on its own before the first statement of a transaction.
        begins = int(raw.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE)
    _round_trips(1 + begins)
    return execute(sql, params, many, context)


def _arm_django() -> None:
    """Count round trips on every connection and time the click's steps (once Django's apps are loaded)."""
    global _armed_django
    if _armed_django:
        return
    _armed_django = True
    import psycopg2.extensions
    from celery.app.task import Task
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.postgresql.base import DatabaseWrapper
    from django_celery_results.backends.database import DatabaseBackend

    def ends_transaction(method: str) -> None:
        original = getattr(BaseDatabaseWrapper, method)

        def counted(self: BaseDatabaseWrapper) -> None:
            if self.connection is not None and \
                    self.connection.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                _round_trips(1)
            original(self)

        setattr(BaseDatabaseWrapper, method, counted)

    ends_transaction("_commit")
    ends_transaction("_rollback")
    is_usable = DatabaseWrapper.is_usable

    def usable(self: DatabaseWrapper) -> bool:
        _round_trips(1)
        return is_usable(self)

    DatabaseWrapper.is_usable = usable
    connect = BaseDatabaseWrapper.connect

    def connecting(self: BaseDatabaseWrapper) -> None:
        connect(self)
        if _count_queries not in self.execute_wrappers:
            self.execute_wrappers.append(_count_queries)
        record = _current()
        if record is not None:
            record.connects += 1

    BaseDatabaseWrapper.connect = connecting
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if _count_queries not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count_queries)

    # The web side: the refresh flow (weather.refreshflow) and its parts.
    import weather.api.cities
    import weather.dispatch
    import weather.refreshflow

    _wrap(weather.api.cities, "request_refresh", REFRESH_FLOW)
    _wrap(weather.refreshflow, "hit", RATE_LIMIT)
    _wrap(weather.refreshflow, "enqueue_city_fetch", ENQUEUE)
    _wrap(weather.dispatch, "_claim", CLAIM)
    _wrap(weather.dispatch, "ensure_publishing_allowed", FLOW_CONTROL)
    _wrap(Task, "apply_async", PUBLISH, before=lambda record: record.fields.setdefault("publish_start", time.time()),
          after=lambda record, call: record.fields.update(task_id=call[2].id))

    import weather.api.tasks

    _wrap(weather.api.tasks, "describe", DESCRIBE)
    _wrap(DatabaseBackend, "_get_task_meta_for", READ_STATE)

    # The worker side: the guard, the result backend, the fetch and its parts.
    import weather.guard
    import weather.quota
    import weather.refresh
    import weather.tasks
    from weather.services import WeatherService

    def state(*args: Any, **kwargs: Any) -> str:
        # store_result(self, task_id, result, state, ...)
        return str(args[3] if len(args) > 3 else kwargs.get("state"))

    def stored(record: _Record, call: tuple) -> None:
        if state(*call[0], **call[1]) == "SUCCESS":
            record.fields["success_stored"] = time.time()

    _wrap(DatabaseBackend, "store_result", lambda *a, **k: STORE.format(state(*a, **k)), after=stored)
    _wrap(weather.guard, "record_start", GUARD_START)
    _wrap(weather.guard, "record_end", GUARD_END)
    _wrap(weather.tasks, "refresh_city", REFRESH_CITY)
    _wrap(weather.quota, "reserve", QUOTA)
    _wrap(WeatherService, "get_current_many", PROVIDER)
    _wrap(weather.refresh, "upsert_readings", UPSERT)
    _wrap(weather.tasks, "_release_fetch_slot", RELEASE_SLOT)


def _traced_tracer(build_tracer: Callable) -> Callable:
    @functools.wraps(build_tracer)
    def build(name: str, task: Any, *args: Any, **kwargs: Any) -> Callable:
        trace = build_tracer(name, task, *args, **kwargs)

        def traced(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
            _arm_django()
            _local.record = _Record("task", name=name, task_id=uuid)
            try:
                return trace(uuid, args, kwargs, request)
            finally:
                record, _local.record = _local.record, None
                record.write()

        return traced

    return build


def arm() -> None:
    """Hook the request cycle and Celery's tracer of this process; the rest is hooked at its first use."""
    import celery.app.trace
    from django.core import signals

    celery.app.trace.build_tracer = _traced_tracer(celery.app.trace.build_tracer)

    def started(sender: Any, environ: dict | None = None, **_: Any) -> None:
        _arm_django()
        environ = environ or {}
        _local.record = _Record("web", method=environ.get("REQUEST_METHOD"), path=environ.get("PATH_INFO"))

    def finished(sender: Any, **_: Any) -> None:
        record, _local.record = _current(), None
        if record is not None:
            record.write()

    signals.request_started.connect(started, weak=False)
    signals.request_finished.connect(finished, weak=False)
