"""Publishing from a request: answer 503 within a second when the broker is away, never hang."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from routing.broker import quick_retries, stop_retrying_if_blocked, unavailable_on_broker_errors


def request_publish_retry() -> dict[str, Any]:
    """Celery's retry policy for a publish from a request.

    A request should answer 503 within a second when the broker is away or blocks
    publishers (a memory or disk alarm), not hang through Celery's default retries:
    one quick reconnect per node (a restart, a cluster's other nodes), none for a
    publish the block held up.
    """
    return {"max_retries": quick_retries(), "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2,
            "errback": stop_retrying_if_blocked}


# How long a request waits for the broker's confirm: milliseconds when all is well.
REQUEST_CONFIRM_TIMEOUT_S = 0.8


def publishing() -> AbstractContextManager[None]:
    """Turn the many ways a publish fails while the broker is away into BrokerUnavailableError."""
    return unavailable_on_broker_errors("publishing a task")
