"""Each lane's depth, consumers and queue wait over the last hour, sampled once a minute by the leading beat."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

from django.utils import timezone

from routing import LANE_NAMES
from routing.broker import queue_states

from .models import LaneSample
from .sharedmetrics import histogram_quantiles, lane_histograms, shared

SAMPLE_EVERY = timedelta(minutes=1)
# The charts show an hour; a little more is kept so the oldest slice is whole.
KEEP = timedelta(hours=1, minutes=10)


def sample_lanes(now: datetime | None = None) -> bool:
    """Record every lane's depth and consumers unless a sample is younger than SAMPLE_EVERY; prune old ones.

    True when it sampled. Raises BrokerUnavailableError when the broker cannot be asked.
    """
    now = now or timezone.now()
    # A tick's slack: beat ticks every few seconds, so "a minute" is never missed by a hair.
    if LaneSample.objects.filter(sampled_at__gt=now - SAMPLE_EVERY + timedelta(seconds=5)).exists():
        return False
    states = queue_states(LANE_NAMES)
    waits = {lane: kinds.get("wait", {}) for lane, kinds in lane_histograms().items()} if shared() else None
    LaneSample.objects.bulk_create([
        LaneSample(lane=lane, sampled_at=now, depth=state.messages, consumers=state.consumers,
                   wait_buckets=None if waits is None else {str(bound): count
                                                            for bound, count in waits.get(lane, {}).items()})
        for lane, state in states.items()])
    LaneSample.objects.filter(sampled_at__lt=now - KEEP).delete()
    return True


def lane_history(lane: str, since: datetime) -> list[LaneSample]:
    """A lane's samples since `since`, oldest first."""
    return list(LaneSample.objects.filter(lane=lane, sampled_at__gte=since).order_by("sampled_at"))


def wait_p95_per_minute(history: list[LaneSample]) -> list[tuple[datetime, float]]:
    """Queue wait p95 of the tasks that started between each two samples, at the later one's time.

    A minute in which no task started has no point; nor has one across a restart of the
    pools' metrics (a bucket that went down).
    """
    series = []
    for before, after in pairwise(history):
        if before.wait_buckets is None or after.wait_buckets is None:
            continue
        delta = {float(bound): count - before.wait_buckets.get(bound, 0.0)
                 for bound, count in after.wait_buckets.items()}
        if any(count < 0 for count in delta.values()):
            continue
        (p95,) = histogram_quantiles(delta, (0.95,))
        if p95 is not None:
            series.append((after.sampled_at, p95))
    return series
