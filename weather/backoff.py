"""Retry delays: exponential with jitter, never sooner than the provider asked."""

from __future__ import annotations

import math
import random

from routing import deployed

MAX_DELAY_S = 300.0


def retry_delay(attempt: int, base: float, hint: float | None = None, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based)."""
    exponential = base * (2**attempt)
    # Full jitter spread over [0.5, 1.0] x exponential: retries from a burst of
    # failures do not all come back in the same second.
    jittered = exponential * (0.5 + 0.5 * (rng or random).random())
    return min(MAX_DELAY_S, max(jittered, hint or 0.0))


# Celery's native delayed delivery (on quorum lanes) counts a delay in whole seconds,
# truncating a fraction (celery.app.base: int(countdown)), and refuses one below a second
# (kombu's calculate_routing_key).
MIN_COUNTDOWN_S = 1.0


def broker_countdown(seconds: float, lane: str) -> float:
    """A delay the lane can hold: whole seconds, rounded up and at least one, where the broker holds it (quorum
    lanes), else as asked (the classic interactive lane of RabbitMQ 3.x: its pool holds its countdowns itself).

    Rounded up: truncated, a batch deferred until quota returns came back before it did, and was refused again.
    """
    if lane not in deployed().quorum_lane_names:
        return seconds
    return float(math.ceil(max(MIN_COUNTDOWN_S, seconds)))
