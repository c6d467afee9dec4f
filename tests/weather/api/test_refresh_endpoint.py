"""The refresh endpoint: one message per city however often it is asked, rate limits, JSON errors."""

import threading

import pytest
from django.db import connections, transaction
from django.test import Client

from routing import Priority
from tests.factories import make_city
from tools.harness import queue_depth, wait_for
from weather.dispatch import enqueue_city_fetch
from weather.models import PendingFetch, WeatherData

pytestmark = pytest.mark.integration



def _post_together(path: str, count: int) -> list:
    barrier = threading.Barrier(count)
    responses = [None] * count

    def post(i: int) -> None:
        try:
            barrier.wait()
            responses[i] = Client().post(path)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return responses


def test_simultaneous_requests_for_one_city_publish_one_message_with_one_id(live, sim):
    city = make_city()
    live.stop("interactive")
    try:
        responses = _post_together(f"/api/cities/{city.pk}/refresh", 2)
        assert [r.status_code for r in responses] == [202, 202]
        bodies = [r.json() for r in responses]
        assert bodies[0]["task_id"] == bodies[1]["task_id"]
        assert sorted(b["deduplicated"] for b in bodies) == [False, True]
        assert queue_depth("interactive") == 1
    finally:
        live.start("interactive")
    wait_for(lambda: WeatherData.objects.filter(city=city).exists(), what="the one fetch")
    wait_for(lambda: not PendingFetch.objects.exists(), what="the pending slot to be released")
    again = Client().post(f"/api/cities/{city.pk}/refresh").json()
    assert again["deduplicated"] is False
    assert again["task_id"] != bodies[0]["task_id"]
    wait_for(lambda: not PendingFetch.objects.exists(), what="the second fetch")


def test_a_rolled_back_transaction_publishes_nothing(live):
    city = make_city()
    live.stop("interactive")
    try:
        def failing_view() -> None:
            with transaction.atomic():
                enqueue_city_fetch(city.pk, Priority.CLICK)
                raise RuntimeError("the view failed after enqueueing")

        with pytest.raises(RuntimeError):
            failing_view()
        # A fetch enqueued after it, committed, is published on the same lane: once it is there, anything the
        # rolled-back view had published would be there before it.
        other = make_city()
        enqueue_city_fetch(other.pk, Priority.CLICK)
        wait_for(lambda: queue_depth("interactive") >= 1, timeout=10, what="the committed fetch on its lane")
        assert queue_depth("interactive") == 1
        assert list(PendingFetch.objects.values_list("city_id", flat=True)) == [other.pk]
    finally:
        live.start("interactive")


def test_the_refresh_endpoint_rate_limits_per_client(live, settings):
    settings.REFRESH_RATE_LIMIT_PER_MINUTE = 3
    city = make_city()
    client = Client()
    statuses = [client.post(f"/api/cities/{city.pk}/refresh").status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    limited = client.post(f"/api/cities/{city.pk}/refresh")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "too many" in limited.json()["error"]
    other = Client(REMOTE_ADDR="10.0.0.7").post(f"/api/cities/{city.pk}/refresh")
    assert other.status_code == 202, "another client has its own budget"
    wait_for(lambda: not PendingFetch.objects.exists(), what="fetches to finish")


@pytest.mark.django_db
def test_api_errors_from_django_itself_are_json():
    bad_host = Client().get("/api/cities/", HTTP_HOST="evil.example")
    assert bad_host.status_code == 400
    assert bad_host.json()["error"] == "bad request"
    no_route = Client().get("/api/nothing-here")
    assert (no_route.status_code, no_route.json()["error"]) == (404, "no such endpoint: /api/nothing-here")
    wrong_method = Client().delete("/api/cities/")
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method["Allow"]
    assert "not allowed" in wrong_method.json()["error"]


def test_the_refresh_endpoint_cannot_flood_the_provider(live, sim, settings):
    settings.REFRESH_RATE_LIMIT_PER_MINUTE = 30
    cities = [make_city() for _ in range(5)]
    client = Client()
    live.stop("interactive")  # every request arrives while the first fetches are still queued
    try:
        statuses = [client.post(f"/api/cities/{cities[i % 5].pk}/refresh").status_code for i in range(60)]
        assert queue_depth("interactive") == 5, "one message per city, however often it was asked for"
    finally:
        live.start("interactive")
    assert (statuses.count(202), statuses.count(429)) == (30, 30)
    wait_for(lambda: not PendingFetch.objects.exists(), what="the five fetches")
    assert sim.stats()["requests"] == 5


@pytest.mark.django_db(transaction=True)
def test_a_city_deleted_while_claimed_is_a_404_not_a_500(monkeypatch):
    from weather import refreshflow

    city = make_city()
    real = refreshflow.enqueue_city_fetch

    def delete_first(city_id, priority):
        city.delete()  # the city vanishes between the view's check and the claim
        return real(city_id, priority)

    monkeypatch.setattr(refreshflow, "enqueue_city_fetch", delete_first)
    response = Client().post(f"/api/cities/{city.pk}/refresh")
    assert response.status_code == 404
    assert "no city" in response.json()["error"]
    assert not PendingFetch.objects.exists()


@pytest.mark.django_db
def test_a_database_lost_mid_request_is_a_503_with_retry_after_not_a_500(monkeypatch):
    # What a PostgreSQL restart does to a request in flight (found by the nemesis: 500s while it restarted).
    from django.db import OperationalError

    from weather import refreshflow

    city = make_city()

    def connection_lost(city_id, priority):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(refreshflow, "enqueue_city_fetch", connection_lost)
    response = Client().post(f"/api/cities/{city.pk}/refresh")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"] == "the database is unavailable; try again shortly"
