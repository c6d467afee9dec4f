"""The refresh rate limit is a sliding window: no span of a window's length admits more than the limit."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from weather.ratelimit import hit

# Every test against both paths: the database function (PostgreSQL) and the ORM steps (SQLite).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("implementation")]

T0 = 1_790_000_000.0


def test_a_burst_across_a_minute_boundary_admits_no_more_than_the_limit():
    # Five at the end of one clock minute: a fixed window would take five more at the next minute's start.
    assert [hit("client", 5, 60, now=T0 + 55 + i * 0.1) for i in range(5)] == [None] * 5
    assert hit("client", 5, 60, now=T0 + 61) == 54, "refused until the oldest leaves the window"
    assert hit("client", 5, 60, now=T0 + 114.9) == 1
    assert hit("client", 5, 60, now=T0 + 115.01) is None
    assert hit("other client", 5, 60, now=T0 + 61) is None, "each client has its own window"


def test_random_traffic_never_puts_more_than_the_limit_in_any_window():
    rng = random.Random(7)
    times = sorted(T0 + rng.uniform(0, 600) for _ in range(400))
    accepted = [t for t in times if hit("busy", 10, 60, now=t) is None]
    assert len(accepted) >= 90, "the limit is reached, not just never exceeded"
    for i, start in enumerate(accepted):
        in_window = [t for t in accepted[i:] if t < start + 60]
        assert len(in_window) <= 10, (start, in_window)


def test_clients_counted_at_once_from_many_connections_get_exactly_the_limit():
    # Each thread has its own database connection, as web processes do: the row lock serialises them.
    start = threading.Barrier(8)
    now = time.time()

    def knock() -> list[int | None]:
        try:
            start.wait()
            return [hit("crowd", 25, 60, now=now + i * 0.001) for i in range(10)]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as threads:
        answers = [answer for batch in threads.map(lambda _: knock(), range(8)) for answer in batch]
    assert answers.count(None) == 25


def test_a_limit_of_zero_admits_nothing():
    # An API key's limit may be set to 0 in the admin: it is refused, not let through nor a 500.
    assert hit("closed", 0, 60, now=T0) == 60
    assert hit("closed", 0, 60, now=T0 + 3600) == 60
