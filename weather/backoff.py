"""Retry delays: exponential with jitter, never sooner than the provider asked."""

from __future__ import annotations

import random

MAX_DELAY_S = 300.0


def retry_delay(attempt: int, base: float, hint: float | None = None, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based)."""
    exponential = base * (2**attempt)
    # Full jitter spread over [0.5, 1.0] x exponential: retries from a burst of
    # failures do not all come back in the same second.
    jittered = exponential * (0.5 + 0.5 * (rng or random).random())
    return min(MAX_DELAY_S, max(jittered, hint or 0.0))
