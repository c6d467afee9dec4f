"""A batch refused for quota comes back when quota does, behind the batches of older runs still waiting."""

from datetime import timedelta

import pytest
from django.utils import timezone

from routing import BULK
from weather.backoff import broker_countdown
from weather.models import RefreshBatch, RefreshRun
from weather.quota import QuotaExceededError
from weather.refresh import quota_deferral

pytestmark = pytest.mark.django_db


def _waiting_run(started_ago: timedelta) -> RefreshRun:
    run = RefreshRun.objects.create(started_at=timezone.now() - started_ago, batch_size=5, batches_total=1,
                                    cities_total=5)
    RefreshBatch.objects.create(run=run, index=0, cities=5)
    return run


def test_the_oldest_run_s_deferred_batches_come_back_first_and_none_before_quota_does():
    oldest, middle, newest = (_waiting_run(timedelta(minutes=ago)) for ago in (3, 2, 1))
    now = timezone.now()
    refused = QuotaExceededError("bulk quota per minute is used up", retry_at=now + timedelta(seconds=2.5), now=now)
    comes_back = [broker_countdown(quota_deferral(run.pk, 0, 5, refused), BULK.name)
                  for run in (oldest, middle, newest)]
    # Whole seconds on the broker: the oldest run's batch first, each younger run's a second after.
    assert comes_back == [3.0, 4.0, 5.0]
    # An older run whose batches are all done no longer holds anyone back.
    RefreshBatch.objects.filter(run=oldest).update(status=RefreshBatch.Status.DONE)
    assert broker_countdown(quota_deferral(newest.pk, 0, 5, refused), BULK.name) == 4.0
