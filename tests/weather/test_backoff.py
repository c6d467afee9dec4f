"""Retry delays: exponential with jitter, never sooner than asked, and always a delay the broker can hold."""

from __future__ import annotations

import random

from routing import BULK, INTERACTIVE, MAINTENANCE
from weather.backoff import MAX_DELAY_S, broker_countdown, retry_delay


def test_delays_grow_with_jitter_and_respect_the_providers_hint():
    rng = random.Random(1)
    first = [retry_delay(0, 2.0, rng=rng) for _ in range(50)]
    assert all(1.0 <= d <= 2.0 for d in first)
    assert all(8.0 <= retry_delay(3, 2.0, rng=rng) <= 16.0 for _ in range(50))
    assert retry_delay(0, 2.0, hint=30.0, rng=rng) == 30.0
    assert retry_delay(20, 2.0, rng=rng) == MAX_DELAY_S


def test_countdowns_on_quorum_lanes_are_whole_seconds_never_sooner_and_clicks_keep_theirs():
    # Celery's native delayed delivery refuses a delay below a second (the fault tests met it with 0.2 s).
    assert broker_countdown(0.2, BULK.name) == 1.0
    assert broker_countdown(0.0, MAINTENANCE.name) == 1.0
    # Whole seconds, never sooner than asked: Celery truncates 7.5 s to 7, before the provider or the quota is back.
    assert broker_countdown(7.5, BULK.name) == 8.0
    assert broker_countdown(3.0, BULK.name) == 3.0
    # The interactive pool holds its countdowns itself: a 0.3 s Retry-After stays 0.3 s.
    assert broker_countdown(0.3, INTERACTIVE.name) == 0.3
