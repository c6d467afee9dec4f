"""The lanes' history for /ops/: the leading beat's once-a-minute sample of depth and consumers, an hour kept."""

from datetime import timedelta

import pytest
from django.utils import timezone

from routing import LANE_NAMES
from tools.harness import purge_lanes
from weather.lanesamples import KEEP, SAMPLE_EVERY, lane_history, sample_lanes
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
    assert [(at, depth) for at, depth, _ in history] == [(now, 2), (now + SAMPLE_EVERY, 2)]
    assert {consumers for _, _, consumers in history} == {0}
    # The sample older than KEEP went with the first new one.
    assert not LaneSample.objects.filter(depth=9).exists()
