"""Each lane's depth and consumers over the last hour: sampled once a minute by the leading beat, read by /ops/."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from routing import LANE_NAMES
from routing.broker import queue_states

from .models import LaneSample

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
    LaneSample.objects.bulk_create([LaneSample(lane=lane, sampled_at=now, depth=state.messages,
                                               consumers=state.consumers) for lane, state in states.items()])
    LaneSample.objects.filter(sampled_at__lt=now - KEEP).delete()
    return True


def lane_history(lane: str, since: datetime) -> list[tuple[datetime, int, int | None]]:
    """(when, depth, consumers) of a lane's samples since `since`, oldest first."""
    return list(LaneSample.objects.filter(lane=lane, sampled_at__gte=since).order_by("sampled_at")
                .values_list("sampled_at", "depth", "consumers"))
