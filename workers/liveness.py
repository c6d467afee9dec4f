"""A worker's liveness, as a file its consumer loop touches: stale when the loop is stuck, whatever the broker says.

`python -m workers alive <pool>` exits 0 while the file is fresh; an orchestrator's
liveness probe runs it inside the worker's container. A ping through the broker
would need the broker (and hangs while it blocks publishers); a process check
would pass for a loop stuck in a deadlock.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

from .pools import POOL_NAME_ENV

TOUCH_EVERY_S = 10
# Overrides TOUCH_EVERY_S (seconds): a probe that checks more often than STALE_AFTER_S allows has no use for it,
# a test that watches the touches does.
TOUCH_EVERY_ENV = "LIVENESS_TOUCH_EVERY_S"
# Stale after this long without a touch: a broker outage pauses the loop's timers while
# Celery reconnects, so this allows a couple of minutes of that before a restart.
STALE_AFTER_S = 180


def liveness_file(pool: str) -> Path:
    """Where the pool's worker in this container touches its liveness."""
    return Path(os.environ.get("LIVENESS_DIR", tempfile.gettempdir())) / f"f_brain-{pool}.alive"


def touch(pool: str) -> None:
    """Mark the pool's worker alive now."""
    liveness_file(pool).touch()


def alive(pool: str, now: float | None = None) -> bool:
    """Whether the pool's worker touched its file within STALE_AFTER_S."""
    try:
        touched = liveness_file(pool).stat().st_mtime
    except FileNotFoundError:
        return False
    return (time.time() if now is None else now) - touched < STALE_AFTER_S


class TouchLivenessFile(bootsteps.StartStopStep):
    """Touches the pool's liveness file from the consumer's own timer, so only a running loop keeps it fresh."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.entry = None
        self.pool = os.environ.get(POOL_NAME_ENV) or "default"

    def start(self, parent: Any) -> None:
        touch(self.pool)
        every = float(os.environ.get(TOUCH_EVERY_ENV) or TOUCH_EVERY_S)
        self.entry = parent.timer.call_repeatedly(every, touch, (self.pool,))

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None
