"""A declined click whose FAILURE cannot be written runs once more, holding its slot, rather than end unrecorded."""

import pytest
from celery import uuid
from celery.exceptions import Retry
from django.db import OperationalError
from django_celery_results.models import TaskResult

from tests.factories import make_city
from tools.harness import wait_for
from weather.models import PendingFetch
from weather.services import TransientProviderError
from weather.tasks import fetch_weather_for_city

pytestmark = pytest.mark.integration


def test_a_decline_the_database_cannot_record_runs_once_more_and_ends_recorded(live, sim, monkeypatch):
    # Acknowledged unrecorded, the click would stay RETRY for the person polling it (found by the nemesis during a
    # PostgreSQL restart). Declined here as its pool declines it, inside a worker's request, with the result
    # backend's write failing: it is sent again, its slot kept, and the interactive pool runs it to a recorded end.
    city = make_city()
    task_id = uuid()
    PendingFetch.objects.create(city=city, task_id=task_id)  # the click's claim, as the API made it

    def database_away(*args: object, **kwargs: object) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(fetch_weather_for_city.backend, "mark_as_failure", database_away)
    fetch_weather_for_city.push_request(id=task_id, retries=0, args=[city.pk], kwargs={}, called_directly=False,
                                        hostname="interactive@host-a")
    try:
        outcome = fetch_weather_for_city.decline(TransientProviderError("provider error (503)"))
    finally:
        fetch_weather_for_city.pop_request()
    assert isinstance(outcome, Retry), outcome
    assert not TaskResult.objects.filter(task_id=task_id).exists(), "no ending recorded yet"
    assert PendingFetch.objects.filter(task_id=task_id).exists(), "its slot held while it has not ended"

    ended = wait_for(lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").first(), timeout=60,
                     what="the click to run once more on the interactive pool")
    assert f'"city_id": {city.pk}' in ended.result, ended.result
    assert not PendingFetch.objects.filter(task_id=task_id).exists(), "its slot released once it ended"
