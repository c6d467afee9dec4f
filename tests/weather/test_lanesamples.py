"""The lanes' history for /ops/: the leading beat's once-a-minute sample of depth and consumers, an hour kept."""

from datetime import timedelta

import pytest
from django.utils import timezone

from routing import LANE_NAMES
from tools.harness import purge_lanes
from weather.lanesamples import KEEP, SAMPLE_EVERY, lane_history, sample_lanes, wait_p95_per_minute
from weather.models import LaneSample
from weather.tasks import cleanup_old_weather_data

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def test_a_sample_a_minute_read_from_the_broker_and_old_ones_pruned():
    purge_lanes()
    for _ in range(2):  # nothing consumes maintenance here: two messages wait
        cleanup_old_weather_data.delay()
    try:
        now = timezone.now()
        LaneSample.objects.create(lane="maintenance", sampled_at=now - KEEP - timedelta(minutes=1), depth=9)
        assert sample_lanes(now) is True
        assert sample_lanes(now + SAMPLE_EVERY / 2) is False, "a second sample within the minute"
        assert sample_lanes(now + SAMPLE_EVERY) is True
    finally:
        purge_lanes()
    assert set(LaneSample.objects.values_list("lane", flat=True)) == set(LANE_NAMES)
    history = lane_history("maintenance", now - timedelta(minutes=5))
    assert [(s.sampled_at, s.depth) for s in history] == [(now, 2), (now + SAMPLE_EVERY, 2)]
    assert {s.consumers for s in history} == {0}
    # This process shares the pools' metric files (PROMETHEUS_MULTIPROC_DIR): the wait histogram is kept.
    assert all(isinstance(s.wait_buckets, dict) for s in history)
    # The sample older than KEEP went with the first new one.
    assert not LaneSample.objects.filter(depth=9).exists()


def _sample(minute: int, buckets: dict[float, float] | None) -> LaneSample:
    at = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=minute)
    return LaneSample(lane="interactive", sampled_at=at, depth=0, consumers=1,
                      wait_buckets=None if buckets is None else {str(bound): count for bound, count in buckets.items()})


def test_the_wait_chart_is_each_minute_s_own_p95_from_two_cumulative_samples():
    inf = float("inf")
    history = [
        _sample(0, {0.1: 90, 1.0: 100, inf: 100}),
        # 10 tasks started in this minute, all waiting 5-10 s: its p95 is 10 s, whatever came before.
        _sample(1, {0.1: 90, 1.0: 100, 10.0: 110, inf: 110}),
        _sample(2, {0.1: 90, 1.0: 100, 10.0: 110, inf: 110}),  # nothing started: no point
        _sample(3, {0.1: 1, inf: 1}),  # the pools' metrics restarted: no point across it
        _sample(4, {0.1: 21, inf: 21}),
        _sample(5, None),  # the beat lost sight of the metric files
    ]
    assert wait_p95_per_minute(history) == [(history[1].sampled_at, 10.0), (history[4].sampled_at, 0.1)]
